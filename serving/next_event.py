"""What the next event will be besides its item: its action type and how soon it comes.

Heads on a network's hidden state after the newest event, the state its item scores come from:
the action type of the next event, the action type given that the next item is a particular
one (the chance the top item is bought rather than viewed), and quantiles of log(1 + seconds)
until the next event at ``contract.GAP_QUANTILE_LEVELS``, increasing by construction.

They train on that state detached from the trunk: they read what the item objective built and
cannot pull it elsewhere, so adding them leaves the item model as it was. A window's newest
event already sits in that state (its action and gap bucket are inputs), and the item
objective needs it: what follows a cart is its purchase. The action and gap heads also read
the window's profile (:func:`window_profile`): the user's own mix of actions and pace, which
the item objective has no reason to keep in the state.

Shapes: N rows, T columns, K items per row, D hidden, A action types, Q quantile levels,
F = PROFILE_SIZE.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from contract import ACTIONS, GAP_QUANTILE_LEVELS, N_GAP_BUCKETS

__all__ = [
    "MAX_LOG_GAP",
    "PROFILE_SIZE",
    "NextEventHeads",
    "NextEventTargets",
    "event_profiles",
    "gap_seconds",
    "log_gap",
    "profile_shares",
    "window_profile",
]

# Largest served log(1 + seconds) to the next event, about 15 years.
MAX_LOG_GAP = 20.0

# Shares of the window's events by action type and by gap bucket.
PROFILE_SIZE = len(ACTIONS) + N_GAP_BUCKETS


def event_profiles(actions: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
    """Each column's event as one-hot action type and gap bucket, int64 [N, T] each -> float
    [N, T, F]; all zero for padding (action 0)."""
    # Comparisons rather than one_hot: the same ops in torch and in the exported graph.
    kinds = actions.unsqueeze(-1) == torch.arange(1, len(ACTIONS) + 1, device=actions.device)
    paces = (gaps.unsqueeze(-1) == torch.arange(N_GAP_BUCKETS, device=gaps.device)) & kinds.any(-1, True)
    return torch.cat([kinds, paces], dim=-1).float()


def window_profile(actions: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
    """The window's shares of action types and of gap buckets among its real events, [N, F]."""
    return profile_shares(event_profiles(actions, gaps).sum(dim=1))


def profile_shares(counts: torch.Tensor) -> torch.Tensor:
    """Event counts by action type and gap bucket [..., F] -> shares of the real events."""
    return counts / counts[..., : len(ACTIONS)].sum(dim=-1, keepdim=True).clamp(min=1.0)


def log_gap(seconds: torch.Tensor) -> torch.Tensor:
    """The scale the gap quantiles live on: log(1 + seconds), negative gaps as 0."""
    return torch.log1p(seconds.clamp(min=0))


def gap_seconds(log_quantiles: torch.Tensor) -> torch.Tensor:
    """Seconds at quantiles of log(1 + seconds): at least 0, because where many gaps are 0 the
    pinball fit of the lowest quantile lands on either side of 0, and at most ``MAX_LOG_GAP``
    so that exp stays finite in float32. Clamping keeps the quantiles in order."""
    return torch.expm1(log_quantiles.clamp(min=0.0, max=MAX_LOG_GAP))


class NextEventTargets(NamedTuple):
    """What followed each training window: the next event's action index (0-based in ACTIONS),
    the vectors of its item [N, D] and the seconds until it, float [N]; and the window's
    profile [N, F]."""

    actions: torch.Tensor
    item_vectors: torch.Tensor
    gap_seconds: torch.Tensor
    profiles: torch.Tensor


def _head(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, outputs))


def _last_bias(head: nn.Sequential) -> torch.Tensor:
    layer = head[-1]
    assert isinstance(layer, nn.Linear)
    return layer.bias


class NextEventHeads(nn.Module):
    """Action, item-action and gap heads of one network."""

    levels: torch.Tensor  # float [Q] buffer: GAP_QUANTILE_LEVELS

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.action = _head(hidden + PROFILE_SIZE, hidden, len(ACTIONS))
        # The item enters with its product with the state: whether the next item is the one just
        # carted is what decides between a purchase and a view.
        self.item_action = _head(3 * hidden, hidden, len(ACTIONS))
        self.gap = _head(hidden + PROFILE_SIZE, hidden, len(GAP_QUANTILE_LEVELS))
        self.register_buffer("levels", torch.tensor(GAP_QUANTILE_LEVELS), persistent=False)
        with torch.no_grad():
            # Starting near a minute between events keeps early pinball gradients moderate.
            _last_bias(self.gap).fill_(math.log1p(60.0))

    def action_logits(self, hidden: torch.Tensor, profiles: torch.Tensor) -> torch.Tensor:
        """[N, D] and [N, F] -> [N, A]."""
        return self.action(torch.cat([hidden, profiles], dim=-1))

    def item_action_logits(self, hidden: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        """[N, D] and the items' vectors [N, K, D] -> [N, K, A]: the next action if the next
        item is each of them."""
        state = hidden.unsqueeze(1).expand_as(item_vectors)
        return self.item_action(torch.cat([state, item_vectors, state * item_vectors], dim=-1))

    def log_gap_quantiles(self, hidden: torch.Tensor, profiles: torch.Tensor) -> torch.Tensor:
        """[N, D] and [N, F] -> [N, Q] quantiles of log(1 + seconds), increasing along Q."""
        raw = self.gap(torch.cat([hidden, profiles], dim=-1))
        steps = F.softplus(raw[:, 1:])
        return torch.cat([raw[:, :1], raw[:, :1] + steps.cumsum(dim=1)], dim=1)

    def loss(self, hidden: torch.Tensor, targets: NextEventTargets) -> torch.Tensor:
        """Cross-entropy of both action heads plus the pinball loss of the gap quantiles (mean
        over levels), on ``hidden`` [N, D] and item vectors as the heads will see them: detached."""
        hidden, items = hidden.detach(), targets.item_vectors.detach()
        action = F.cross_entropy(self.action_logits(hidden, targets.profiles), targets.actions)
        item_action = F.cross_entropy(
            self.item_action_logits(hidden, items.unsqueeze(1)).squeeze(1), targets.actions
        )
        error = log_gap(targets.gap_seconds).unsqueeze(1) - self.log_gap_quantiles(hidden, targets.profiles)
        pinball = torch.maximum(self.levels * error, (self.levels - 1) * error).mean()
        return action + item_action + pinball
