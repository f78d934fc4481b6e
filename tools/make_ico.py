#!/usr/bin/env python3
"""Makes assets/icon.ico (the Windows executable icon that build.rs embeds on Windows)
and the hicolor PNGs the Debian package installs (assets/icons/movie-eras-NN.png) from
assets/icon.png, with the standard library only.

The ICO holds PNG images at 16, 24, 32, 48, 64 and 128 pixels (PNG entries are valid in
ICO files since Windows Vista); the smaller sizes are box-filtered from the 128-pixel
source. Rerun after changing the icon:

    python3 tools/make_ico.py assets/icon.png assets/icon.ico assets/icons
"""

import struct
import sys
import zlib

SIZES = [16, 24, 32, 48, 64, 128]


def read_png_rgba(path):
    """Decodes an 8-bit RGBA or RGB, non-interlaced PNG into rows of RGBA tuples."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise SystemExit(f"{path}: only 8-bit RGB/RGBA non-interlaced PNGs are supported")
    channels = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append([
            tuple(line[x * channels:x * channels + channels]) + (() if channels == 4 else (255,))
            for x in range(width)
        ])
        prev = line
    return rows


def resize(rows, size):
    """Box filter (area average, alpha-weighted colours) to size x size."""
    h, w = len(rows), len(rows[0])
    out = []
    for oy in range(size):
        y0, y1 = oy * h // size, max(oy * h // size + 1, (oy + 1) * h // size)
        line = []
        for ox in range(size):
            x0, x1 = ox * w // size, max(ox * w // size + 1, (ox + 1) * w // size)
            acc, alpha, n = [0, 0, 0], 0, 0
            for y in range(y0, y1):
                for x in range(x0, x1):
                    r, g, b, a = rows[y][x]
                    acc[0] += r * a
                    acc[1] += g * a
                    acc[2] += b * a
                    alpha += a
                    n += 1
            colour = tuple(round(c / alpha) if alpha else 0 for c in acc)
            line.append(colour + (round(alpha / n),))
        out.append(line)
    return out


def png_bytes(rows):
    size = len(rows)
    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in rows)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "assets/icon.png"
    dst = sys.argv[2] if len(sys.argv) > 2 else "assets/icon.ico"
    rows = read_png_rgba(src)
    if len(rows) != len(rows[0]):
        raise SystemExit(f"{src}: the icon must be square")
    images = [png_bytes(rows if s == len(rows) else resize(rows, s)) for s in SIZES if s <= len(rows)]
    sizes = [s for s in SIZES if s <= len(rows)]
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    entries = b""
    for s, img in zip(sizes, images):
        entries += struct.pack("<BBBBHHII", s % 256, s % 256, 0, 0, 1, 32, len(img), offset)
        offset += len(img)
    open(dst, "wb").write(header + entries + b"".join(images))
    print(f"wrote {dst}: {', '.join(str(s) for s in sizes)} px")
    if len(sys.argv) > 3:
        import os
        os.makedirs(sys.argv[3], exist_ok=True)
        for s, img in zip(sizes, images):
            open(os.path.join(sys.argv[3], f"movie-eras-{s}.png"), "wb").write(img)
        print(f"wrote {sys.argv[3]}/movie-eras-NN.png")


if __name__ == "__main__":
    main()
