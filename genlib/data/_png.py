"""The integrity check a PNG passes before PIL decodes it.

PIL alone never checks the CRCs of a PNG's pixel chunks, and it returns black rows for pixel
data that stops short, so a damaged file would read as a picture without any error.
:func:`verify` reads the file's chunks itself and refuses it unless

1. every chunk's CRC (CRC-32 of its type and body) matches the one stored after it;
2. the chunks run up to an ``IEND`` chunk (a cut file ends before it);
3. the ``IDAT`` chunks' zlib stream is complete and inflates to exactly the bytes the ``IHDR``
   header announces: per row a filter byte and ``ceil(width * bits / 8)`` bytes, with ``bits``
   = samples a pixel x bit depth (so 1-, 2- and 4-bit rows end in a partly used byte), row by
   row in each of the seven reduced images of an Adam7-interlaced file.

It is used by :func:`genlib.data.files.load_folder`.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples a pixel: grey, RGB, palette, LA, RGBA
# the seven passes of Adam7 interlacing: first column and row, column and row steps (x0, y0, dx, dy)
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def scanline_bytes(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    """Bytes a PNG's pixel data inflates to: per row a filter byte and ``ceil(width * bits / 8)``.

    An interlaced (Adam7) image is stored as seven reduced images, each with its own rows.
    """
    total = 0
    for x0, y0, dx, dy in ADAM7 if interlaced else ((0, 0, 1, 1),):
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy  # pixels of this pass
        if w > 0 and h > 0:
            total += h * (1 + (w * bits_per_pixel + 7) // 8)
    return total


def verify(path: Path) -> None:
    """Check a PNG's chunk CRCs and the length of its inflated pixel data, before decoding it.

    Raises ``ValueError`` saying what is wrong (the caller adds the file's name).
    """
    data = Path(path).read_bytes()
    pos, header, idat = len(SIGNATURE), None, []
    while True:
        if pos + 12 > len(data):
            raise ValueError("the PNG ends before its IEND chunk (the file is truncated)")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body, end = data[pos + 8 : pos + 8 + length], pos + 12 + length
        name = kind.decode("latin-1")
        if end > len(data):
            raise ValueError(f"the PNG ends inside its {name} chunk (the file is truncated)")
        if zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4 : end])[0]:
            raise ValueError(f"the CRC of its {name} chunk does not match its bytes (the file is damaged)")
        if kind == b"IHDR" and length == 13:
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos = end
    if header is None or header[3] not in SAMPLES:
        raise ValueError("the PNG has no valid IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    expected = scanline_bytes(width, height, SAMPLES[colour] * depth, interlace == 1)
    what = f"a {width}x{height} PNG of colour type {colour} at bit depth {depth} needs {expected}"
    stream = zlib.decompressobj()
    try:
        rows = stream.decompress(b"".join(idat), expected + 1)  # one byte more shows an overlong stream
    except zlib.error as e:
        raise ValueError(f"its compressed pixel data is damaged ({e})") from e
    if len(rows) > expected:
        raise ValueError(f"its pixel data decompresses to more than {expected} bytes; {what}")
    if not stream.eof:
        raise ValueError(f"its compressed pixel data stops before its end ({len(rows)} bytes); {what}")
    if len(rows) < expected:
        raise ValueError(f"its pixel data decompresses to {len(rows)} bytes; {what} (PIL fills the rest black)")
