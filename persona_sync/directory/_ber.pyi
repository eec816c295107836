from collections.abc import Callable

def decode_entries(
    buffer: bytes,
    spans: list[tuple[int, int]],
    names: dict[bytes, str],
    convert: dict[str, Callable[[bytes], str | None]],
    /,
) -> list[tuple[str, dict[str, str]]]: ...
def frame_messages(
    buffer: bytes | bytearray, position: int, spans: list[tuple[int, int]], /
) -> tuple[int, int, int]: ...
