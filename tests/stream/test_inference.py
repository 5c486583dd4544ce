import pytest

from stream.inference import split_requests
from stream.records import WindowEvent

pytestmark = pytest.mark.unit


def windows(n: int) -> list[tuple[WindowEvent, ...]]:
    return [(WindowEvent(f"e{i}", "i", "view", i),) for i in range(n)]


@pytest.mark.parametrize(
    ("n", "max_batch", "instances", "sizes"),
    [
        (40, 16, 1, [13, 14, 13]),  # no request above the batch limit, sizes even
        (6, 16, 2, [3, 3]),  # one request per instance, so both work
        (1, 16, 2, [1]),  # never an empty request
        (0, 16, 2, []),
    ],
)
def test_windows_are_split_into_even_requests(
    n: int, max_batch: int, instances: int, sizes: list[int]
) -> None:
    chunks = split_requests(windows(n), max_batch, instances)
    assert [len(chunk) for chunk in chunks] == sizes
    assert [w for chunk in chunks for w in chunk] == windows(n)  # order kept, nothing lost
