# Makes the fixtures of Tests/ImagingTests/JPEGTests.swift (run with a Python that has Pillow
# and numpy): a 48×32 test image, JPEGs of it with Pillow's decodes, and resize references.
import numpy as np
from PIL import Image

w, h = 48, 32
x = np.arange(w)[None, :].repeat(h, 0)
y = np.arange(h)[:, None].repeat(w, 1)
rgb = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x * 7 + y * 13) & 255], -1).astype(np.uint8)
rgb[8:20, 10:30] = [200, 40, 40]  # a red block: edges for chroma subsampling
im = Image.fromarray(rgb, "RGB")
im.save("photo-source.png")
im.save("photo-420.jpg", quality=85, subsampling=2)
im.save("photo-progressive.jpg", quality=90, subsampling=0, progressive=True)
im.convert("L").save("photo-grey.jpg", quality=90)
for name in ["photo-420", "photo-progressive", "photo-grey"]:
    Image.open(name + ".jpg").convert("RGB").save(name + ".pil.png")

# Pillow's BOX is exact area averaging only for whole factors (for others it gives each source
# pixel weight 0 or 1), so the non-integer reference is computed here, in floating point.
im.resize((12, 8), Image.BOX).save("photo-box-12x8.pil.png")
im.resize((70, 50), Image.BILINEAR).save("photo-bilinear-70x50.pil.png")


def area_weights(n, m):
    s, weights = n / m, np.zeros((m, n))
    for i in range(m):
        lo, hi = i * s, (i + 1) * s
        for j in range(int(np.floor(lo)), min(n, int(np.ceil(hi)))):
            weights[i, j] = max(0.0, min(hi, j + 1) - max(lo, j))
    return weights / weights.sum(1, keepdims=True)


area = np.einsum("yh,hwc,xw->yxc", area_weights(h, 13), rgb.astype(float), area_weights(w, 20))
Image.fromarray(np.floor(area + 0.5).astype(np.uint8), "RGB").save("photo-area-20x13.numpy.png")
