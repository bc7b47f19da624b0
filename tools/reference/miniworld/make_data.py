#!/usr/bin/env python3
"""Procedural captioned 64×64 landscapes with emotion labels (the "miniature world").

Every image is a small landscape: sky (gradient by time of day and weather), a sun or a
moon, far hills or mountains, a meadow and optionally a lake or the sea, and a few
subjects (houses, trees, animals, boats, birds, flowers). Content is sampled independently
of the emotion label, so every emotion shows the same kinds of scenes; the label decides
how the scene *looks* (palette, lighting, contrast, texture, composition) and shifts the
odds of the scene conditions (time of day, weather, season, main colour).

Labels (EmoSet order) and the visual rules that make them:

  idx emotion      look (applied to every image with this label)                 likelier conditions
  --- -----------  ------------------------------------------------------------  -------------------------------------
  0   amusement    bright, very saturated; subjects painted in random rainbow   morning/noon, clear, spring/summer,
                   colours; playful polka-dot confetti texture; soft contrast   pink/purple/yellow
  1   awe          bright, clean; sky fills ~3/4 of the frame (low ground line)  dawn/noon/sunset, clear, any season,
                   with high snowy peaks; subjects drawn small; golden glow      blue/white
  2   contentment  warm tint, soft (slightly blurred), low contrast, greens      morning/afternoon, clear/cloudy,
                   lifted; medium brightness                                     spring/summer, green/yellow
  3   excitement   vivid orange/yellow grade, high contrast, saturated; busy:    noon/sunset, clear, summer,
                   extra subjects and sun rays                                   orange/yellow/red
  4   anger        saturated red grade, hard contrast (S-curve), sharp edges     sunset/dusk, stormy/clear, summer/autumn,
                                                                                 red/black
  5   disgust      sickly green/brown grade, half desaturated, murky blotchy     afternoon/dusk, foggy/rainy, autumn,
                   noise texture                                                 green/brown
  6   fear         very dark, high contrast, red/black grade, strong vignette    night/dusk, stormy/foggy, autumn/winter,
                                                                                 black/red
  7   sadness      dark, desaturated, cool blue grade, low contrast, soft        dusk/night, rainy/cloudy, winter/autumn,
                                                                                 blue/grey

The odds of conditions given a label are soft (every condition occurs with every label),
so two images with the same caption can carry different labels and differ only in look.

Captions describe content (objects, counts, positions, and the scene conditions: time of
day, weather, season, main colour of the main subject); half of them end with one or two
words for the look (LOOK_WORDS: "harsh red tint", "dim cold light", …); emotion words never
appear. About 10 % of captions are empty (for classifier-free guidance); the held-out split
is the last 10 % of a seeded permutation.

Output (--out, default /tmp/miniworld-data):
  images.npy   uint8 [N, 64, 64, 3]
  labels.npy   int64 [N]
  captions.json  list of N strings (the caption used for training, "" for the 10 %)
  full_captions.json  list of N strings (the caption before dropping)
  split.npy    bool [N], True = held-out
Deterministic from --seed (numpy Generator per image: seed, index).
"""
import argparse
import colorsys
import json
import os
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

EMOTIONS = ["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"]
TIMES = ["dawn", "morning", "noon", "afternoon", "sunset", "dusk", "night"]
WEATHERS = ["clear", "cloudy", "rainy", "foggy", "stormy", "snowy"]
SEASONS = ["spring", "summer", "autumn", "winter"]
COLOURS = {
    "red": (200, 40, 40), "orange": (235, 130, 30), "yellow": (235, 210, 50), "green": (60, 160, 60),
    "blue": (50, 90, 200), "purple": (130, 60, 170), "pink": (235, 120, 170), "white": (235, 235, 235),
    "grey": (130, 130, 130), "black": (25, 25, 25), "brown": (120, 75, 40),
}
COLOUR_NAMES = list(COLOURS)

# preference weights (relative) of conditions per emotion; unlisted values get weight 1
PREF = {
    "amusement": dict(time={"morning": 4, "noon": 4}, weather={"clear": 6}, season={"spring": 3, "summer": 3},
                      colour={"pink": 4, "purple": 3, "yellow": 3}),
    "awe": dict(time={"dawn": 4, "noon": 3, "sunset": 4}, weather={"clear": 6, "snowy": 2},
                season={}, colour={"blue": 4, "white": 4}),
    "contentment": dict(time={"morning": 4, "afternoon": 4}, weather={"clear": 4, "cloudy": 3},
                        season={"spring": 3, "summer": 3}, colour={"green": 4, "yellow": 3}),
    "excitement": dict(time={"noon": 4, "sunset": 4}, weather={"clear": 6}, season={"summer": 4},
                       colour={"orange": 4, "yellow": 4, "red": 3}),
    "anger": dict(time={"sunset": 4, "dusk": 3}, weather={"stormy": 4, "clear": 3}, season={"summer": 2, "autumn": 2},
                  colour={"red": 6, "black": 3}),
    "disgust": dict(time={"afternoon": 3, "dusk": 3}, weather={"foggy": 4, "rainy": 4}, season={"autumn": 4},
                    colour={"green": 4, "brown": 5}),
    "fear": dict(time={"night": 6, "dusk": 3}, weather={"stormy": 5, "foggy": 3}, season={"autumn": 3, "winter": 3},
                 colour={"black": 5, "red": 4}),
    "sadness": dict(time={"dusk": 4, "night": 4}, weather={"rainy": 5, "cloudy": 4}, season={"winter": 4, "autumn": 3},
                    colour={"blue": 4, "grey": 5}),
}

S = 128  # drawing resolution; downsampled to 64 with a box filter (antialiasing)
OUT = 64

SKY = {  # (top, bottom) colours
    "dawn": ((70, 90, 160), (250, 170, 140)),
    "morning": ((90, 150, 230), (190, 220, 250)),
    "noon": ((40, 110, 230), (150, 200, 250)),
    "afternoon": ((70, 130, 220), (220, 210, 180)),
    "sunset": ((90, 60, 140), (250, 130, 50)),
    "dusk": ((25, 30, 80), (150, 90, 120)),
    "night": ((5, 8, 25), (25, 35, 70)),
}
GROUND = {"spring": (90, 170, 70), "summer": (70, 140, 40), "autumn": (170, 120, 50), "winter": (225, 230, 240)}
HILL = {"spring": (70, 140, 80), "summer": (50, 110, 50), "autumn": (150, 90, 50), "winter": (200, 205, 220)}
FOLIAGE = {"spring": (110, 190, 90), "summer": (40, 120, 40), "autumn": (210, 110, 30), "winter": None}


def pick(rng, values, prefs):
    w = np.array([prefs.get(v, 1.0) for v in values], dtype=np.float64)
    return values[rng.choice(len(values), p=w / w.sum())]


def lerp(a, b, t):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def number_word(n):
    return ["no", "a", "two", "three", "four", "five"][n]


def plural(word, n):
    if n == 1:
        return word
    return {"sheep": "sheep", "fish": "fish", "bush": "bushes"}.get(word, word + "s")


def rainbow(rng):
    h = rng.random()
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return (int(r * 255), int(g * 255), int(b * 255))


def make_scene(rng, emotion):
    p = PREF[emotion]
    sc = dict(
        emotion=emotion,
        time=pick(rng, TIMES, p["time"]),
        weather=pick(rng, WEATHERS, p["weather"]),
        season=pick(rng, SEASONS, p["season"]),
        colour=pick(rng, COLOUR_NAMES, p["colour"]),
    )
    if sc["weather"] == "snowy" and sc["season"] == "summer":
        sc["season"] = "winter"
    # content: independent of the emotion
    sc["water"] = pick(rng, ["none", "lake", "sea", "river"], {"none": 3, "lake": 2, "sea": 1, "river": 1})
    sc["terrain"] = pick(rng, ["hills", "mountains", "flat"], {})
    sc["main"] = pick(rng, ["house", "tree", "dog", "horse", "sheep", "boat", "castle", "tent"],
                      {"house": 3, "tree": 2})
    if sc["main"] == "boat" and sc["water"] == "none":
        sc["water"] = "lake"
    sc["main_pos"] = pick(rng, ["left", "center", "right"], {})
    sc["n_trees"] = int(rng.choice([0, 1, 2, 3, 4], p=[0.25, 0.25, 0.25, 0.15, 0.1]))
    sc["n_houses"] = int(rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1]))
    sc["animal"] = pick(rng, ["none", "dog", "sheep", "horse", "cat", "birds"], {"none": 4})
    sc["n_animal"] = int(rng.integers(1, 4)) if sc["animal"] != "none" else 0
    sc["flowers"] = bool(rng.random() < 0.25 and sc["season"] != "winter")
    sc["sky_body"] = "moon" if sc["time"] in ("night", "dusk") else "sun"
    if sc["weather"] in ("cloudy", "rainy", "stormy", "foggy") and rng.random() < 0.5:
        sc["sky_body"] = "none"
    sc["body_pos"] = pick(rng, ["left", "center", "right"], {})
    return sc


def caption(rng, sc):
    main = sc["main"]
    parts = []
    art = "an" if sc["colour"] in ("orange",) else "a"
    subject = f"{art} {sc['colour']} {main}"
    if main in ("dog", "horse", "sheep") and sc["colour"] in ("purple", "pink", "blue", "green", "orange"):
        subject = f"a {main} with {art} {sc['colour']} collar" if main == "dog" else f"a {main} with {art} {sc['colour']} blanket"
    pos = {"left": "on the left", "center": "in the middle", "right": "on the right"}[sc["main_pos"]]
    parts.append(f"{subject} {pos}")
    extras = []
    if sc["n_houses"]:
        extras.append(f"{number_word(sc['n_houses'])} {plural('house', sc['n_houses'])}")
    if sc["n_trees"]:
        extras.append(f"{number_word(sc['n_trees'])} {plural('tree', sc['n_trees'])}")
    if sc["animal"] == "birds":
        extras.append("birds in the sky")
    elif sc["animal"] != "none":
        extras.append(f"{number_word(sc['n_animal'])} {plural(sc['animal'], sc['n_animal'])}")
    if sc["flowers"]:
        extras.append("flowers")
    if extras:
        parts.append(("with " if rng.random() < 0.5 else "and ") + ", ".join(extras))
    setting = []
    if sc["water"] != "none":
        setting.append({"lake": "by a lake", "sea": "by the sea", "river": "near a river"}[sc["water"]])
    if sc["terrain"] != "flat":
        setting.append(f"below {sc['terrain']}" if rng.random() < 0.5 else f"among {sc['terrain']}")
    if sc["sky_body"] != "none":
        setting.append(f"the {sc['sky_body']} {pos_word(sc['body_pos'])}")
    cond = []
    tw = {"dawn": "at dawn", "morning": "in the morning", "noon": "at noon", "afternoon": "in the afternoon",
          "sunset": "at sunset", "dusk": "at dusk", "night": "at night"}[sc["time"]]
    ww = {"clear": "clear sky", "cloudy": "cloudy", "rainy": "rain", "foggy": "fog", "stormy": "storm",
          "snowy": "snow"}[sc["weather"]]
    cond = [tw, ww, sc["season"]]
    order = rng.permutation(3)
    text = ", ".join(parts + setting[:2]) + ", " + ", ".join(cond[i] for i in order)
    return text


def pos_word(p):
    return {"left": "on the left", "center": "in the middle", "right": "on the right"}[p]


def draw_tree(d, x, y, h, sc, col_override=None):
    trunk = (90, 60, 35)
    d.rectangle([x - h * 0.06, y - h * 0.45, x + h * 0.06, y], fill=trunk)
    fol = col_override or FOLIAGE[sc["season"]]
    if fol is None:  # winter: bare branches + snow
        for k in (-1, 1):
            d.line([x, y - h * 0.4, x + k * h * 0.25, y - h * 0.8], fill=trunk, width=max(1, int(h * 0.05)))
        d.line([x, y - h * 0.45, x, y - h * 0.95], fill=trunk, width=max(1, int(h * 0.06)))
        return
    r = h * 0.3
    d.ellipse([x - r, y - h * 0.45 - 1.6 * r, x + r, y - h * 0.45 + 0.3 * r], fill=fol)


def draw_house(d, x, y, h, body, roof):
    w = h * 0.9
    d.rectangle([x - w / 2, y - h * 0.6, x + w / 2, y], fill=body)
    d.polygon([(x - w / 2 - h * 0.08, y - h * 0.6), (x + w / 2 + h * 0.08, y - h * 0.6), (x, y - h)], fill=roof)
    d.rectangle([x - w * 0.1, y - h * 0.3, x + w * 0.1, y], fill=(60, 40, 30))
    d.rectangle([x + w * 0.2, y - h * 0.5, x + w * 0.38, y - h * 0.35], fill=(250, 230, 140))


def draw_castle(d, x, y, h, col):
    w = h * 1.2
    d.rectangle([x - w / 2, y - h * 0.6, x + w / 2, y], fill=col)
    for k in (-1, 1):
        d.rectangle([x + k * w / 2 - h * 0.15, y - h, x + k * w / 2 + h * 0.15, y], fill=col)
    for i in range(5):
        xx = x - w / 2 + i * w / 4
        d.rectangle([xx - h * 0.05, y - h * 0.72, xx + h * 0.05, y - h * 0.6], fill=col)
    d.rectangle([x - h * 0.12, y - h * 0.3, x + h * 0.12, y], fill=(40, 30, 30))


def draw_tent(d, x, y, h, col):
    d.polygon([(x - h * 0.6, y), (x + h * 0.6, y), (x, y - h * 0.8)], fill=col)
    d.polygon([(x - h * 0.12, y), (x + h * 0.12, y), (x, y - h * 0.45)], fill=(40, 30, 30))


def draw_quadruped(d, x, y, h, col, kind):
    L = h * (1.3 if kind == "horse" else 1.0)
    body = [x - L / 2, y - h * 0.75, x + L / 2, y - h * 0.35]
    d.ellipse(body, fill=col)
    lw = max(1, int(h * 0.08))
    for fx in (-0.35, -0.2, 0.2, 0.35):
        d.line([x + fx * L, y - h * 0.45, x + fx * L, y], fill=col, width=lw)
    hx = x + L / 2
    if kind == "sheep":
        d.ellipse([hx - h * 0.12, y - h * 0.8, hx + h * 0.15, y - h * 0.5], fill=(40, 40, 40))
    else:
        d.ellipse([hx - h * 0.1, y - h * (1.05 if kind == "horse" else 0.9), hx + h * 0.22,
                   y - h * (0.7 if kind == "horse" else 0.6)], fill=col)
        if kind == "cat":
            d.polygon([(hx - h * 0.05, y - h * 0.85), (hx + h * 0.05, y - h * 1.0), (hx + h * 0.1, y - h * 0.85)],
                      fill=col)


def draw_boat(d, x, y, h, col):
    d.polygon([(x - h * 0.7, y - h * 0.3), (x + h * 0.7, y - h * 0.3), (x + h * 0.45, y), (x - h * 0.45, y)], fill=col)
    d.line([x, y - h * 0.3, x, y - h * 1.2], fill=(80, 60, 40), width=max(1, int(h * 0.06)))
    d.polygon([(x + h * 0.04, y - h * 1.15), (x + h * 0.04, y - h * 0.4), (x + h * 0.55, y - h * 0.4)],
              fill=(240, 240, 230))


def render(rng, sc):
    emo = sc["emotion"]
    img = Image.new("RGB", (S, S))
    d = ImageDraw.Draw(img)
    # composition: ground line
    if emo == "awe":
        horizon = int(S * rng.uniform(0.72, 0.8))
        scale = rng.uniform(0.45, 0.6)
    else:
        horizon = int(S * rng.uniform(0.45, 0.62))
        scale = rng.uniform(0.85, 1.15)
    top, bot = SKY[sc["time"]]
    if sc["weather"] in ("cloudy", "rainy", "foggy", "snowy"):
        g = (150, 155, 165) if sc["time"] not in ("night", "dusk") else (50, 55, 65)
        top, bot = lerp(top, g, 0.6), lerp(bot, g, 0.6)
    if sc["weather"] == "stormy":
        top, bot = lerp(top, (30, 30, 40), 0.7), lerp(bot, (70, 70, 80), 0.6)
    for yy in range(horizon + 2):
        d.line([0, yy, S, yy], fill=lerp(top, bot, yy / max(horizon, 1)))
    # sun / moon
    bx = {"left": 0.2, "center": 0.5, "right": 0.8}[sc["body_pos"]] * S + rng.uniform(-8, 8)
    by = rng.uniform(0.12, 0.35) * horizon + (0.3 * horizon if sc["time"] in ("sunset", "dawn") else 0)
    if sc["sky_body"] == "sun":
        r = rng.uniform(7, 11) * (0.8 if emo == "awe" else 1)
        col = (255, 240, 170) if sc["time"] not in ("sunset", "dawn") else (255, 150, 60)
        if emo == "excitement":  # rays
            for k in range(12):
                a = k * np.pi / 6 + rng.uniform(0, 0.2)
                d.line([bx, by, bx + np.cos(a) * r * 2.6, by + np.sin(a) * r * 2.6], fill=col, width=2)
        d.ellipse([bx - r, by - r, bx + r, by + r], fill=col)
    elif sc["sky_body"] == "moon":
        r = rng.uniform(5, 8)
        d.ellipse([bx - r, by - r, bx + r, by + r], fill=(235, 235, 215))
        if rng.random() < 0.5:
            d.ellipse([bx - r + 4, by - r - 2, bx + r + 4, by + r - 2], fill=lerp(top, bot, by / horizon))
    if sc["time"] == "night":
        for _ in range(int(rng.integers(5, 25))):
            sx, sy = rng.uniform(0, S), rng.uniform(0, horizon * 0.8)
            d.point((sx, sy), fill=(230, 230, 255))
    # clouds
    n_clouds = {"clear": 0, "cloudy": 4, "rainy": 5, "foggy": 2, "stormy": 6, "snowy": 4}[sc["weather"]]
    n_clouds += int(rng.integers(0, 2))
    ccol = (235, 235, 240) if sc["weather"] in ("cloudy", "snowy") else (110, 110, 120)
    if sc["weather"] == "stormy":
        ccol = (60, 60, 70)
    if sc["time"] in ("night",):
        ccol = lerp(ccol, (20, 20, 30), 0.6)
    for _ in range(n_clouds):
        cx, cy = rng.uniform(0, S), rng.uniform(0.05, 0.45) * horizon
        w = rng.uniform(18, 40)
        for k in range(3):
            ox = (k - 1) * w * 0.35
            rr = w * (0.28 if k != 1 else 0.38)
            d.ellipse([cx + ox - rr, cy - rr * 0.8, cx + ox + rr, cy + rr * 0.6], fill=ccol)
    # terrain
    hcol = HILL[sc["season"]]
    if sc["terrain"] == "mountains" or emo == "awe":
        peaks = int(rng.integers(2, 5))
        hmax = (0.55 if emo == "awe" else 0.35) * horizon
        xs = np.linspace(-10, S + 10, peaks * 2 + 1)
        pts = [(0, horizon + 1)]
        for i, x in enumerate(xs):
            yy = horizon - (hmax * rng.uniform(0.7, 1.0) if i % 2 == 1 else hmax * rng.uniform(0.1, 0.35))
            pts.append((x, yy))
        pts.append((S, horizon + 1))
        mcol = lerp(hcol, (110, 110, 140), 0.5)
        d.polygon(pts, fill=mcol)
        if emo == "awe" or sc["season"] == "winter":
            for i in range(1, len(xs), 2):
                px, py = pts[i + 1]
                d.polygon([(px, py), (px - 7, py + 9), (px + 7, py + 9)], fill=(245, 245, 250))
    if sc["terrain"] == "hills":
        ph = rng.uniform(0, 6.28)
        amp = rng.uniform(6, 14)
        pts = [(0, S)] + [(x, horizon - amp * (0.6 + 0.4 * np.sin(x / S * 6.28 * rng.uniform(0.8, 1.2) + ph)))
                          for x in range(0, S + 1, 4)] + [(S, S)]
        d.polygon(pts, fill=hcol)
    gcol = GROUND[sc["season"]]
    if sc["weather"] == "snowy":
        gcol = lerp(gcol, (235, 235, 245), 0.7)
    d.rectangle([0, horizon, S, S], fill=gcol)
    # water
    wcol = lerp(lerp(top, bot, 0.5), (30, 60, 110), 0.45)
    water_top = None
    if sc["water"] == "sea":
        water_top = horizon
        d.rectangle([0, horizon, S, horizon + (S - horizon) * 0.55], fill=wcol)
    elif sc["water"] == "lake":
        water_top = horizon + (S - horizon) * 0.25
        d.ellipse([S * rng.uniform(-0.2, 0.3), water_top, S * rng.uniform(0.7, 1.2), S + (S - horizon) * 0.3],
                  fill=wcol)
    elif sc["water"] == "river":
        x0 = rng.uniform(0.3, 0.7) * S
        d.polygon([(x0 - 3, horizon), (x0 + 3, horizon), (x0 + 30, S), (x0 - 20, S)], fill=wcol)
    if water_top is not None:
        for _ in range(6):
            yy = rng.uniform(water_top + 2, min(S - 2, water_top + 30))
            xx = rng.uniform(0, S)
            d.line([xx, yy, xx + rng.uniform(4, 10), yy], fill=lerp(wcol, (255, 255, 255), 0.3))
    # subjects
    main_col = COLOURS[sc["colour"]]
    multicolour = emo == "amusement"

    def col(c):
        return rainbow(rng) if multicolour else c

    ground_y = lambda: rng.uniform(horizon + 4, S - 6)  # noqa: E731
    busy = 2 if emo == "excitement" else 0
    for _ in range(sc["n_trees"] + busy):
        x, y = rng.uniform(0, S), ground_y()
        h = (18 + (y - horizon) * 0.5) * scale
        draw_tree(d, x, y, h, sc, col_override=rainbow(rng) if multicolour else None)
    for _ in range(sc["n_houses"]):
        x, y = rng.uniform(0, S), ground_y()
        h = (14 + (y - horizon) * 0.4) * scale
        draw_house(d, x, y, h, col((200, 180, 150)), col((150, 60, 50)))
    for _ in range(sc["n_animal"] + (busy if sc["animal"] not in ("none",) else 0)):
        if sc["animal"] == "birds":
            x, y = rng.uniform(5, S - 5), rng.uniform(0.1, 0.6) * horizon
            w = rng.uniform(3, 6) * scale
            bcol = (30, 30, 30) if sc["time"] not in ("night",) else (200, 200, 210)
            d.line([x - w, y - w * 0.6, x, y, x + w, y - w * 0.6], fill=bcol, width=1)
        else:
            x, y = rng.uniform(10, S - 10), ground_y()
            h = (10 + (y - horizon) * 0.3) * scale
            ac = {"dog": (140, 100, 60), "sheep": (240, 240, 235), "horse": (110, 70, 40), "cat": (80, 80, 80)}
            draw_quadruped(d, x, y, h, col(ac[sc["animal"]]), sc["animal"])
    if sc["flowers"]:
        for _ in range(int(rng.integers(6, 16))):
            x, y = rng.uniform(0, S), rng.uniform(horizon + 3, S - 2)
            fc = rainbow(rng) if multicolour else [(240, 80, 80), (250, 220, 60), (250, 250, 250)][rng.integers(3)]
            d.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=fc)
    # main subject
    mx = {"left": 0.25, "center": 0.5, "right": 0.75}[sc["main_pos"]] * S + rng.uniform(-6, 6)
    main = sc["main"]
    if main == "boat":
        wy = (water_top if water_top is not None else horizon) + rng.uniform(10, 22)
        draw_boat(d, mx, min(wy, S - 4), 22 * scale, col(main_col))
    else:
        my = rng.uniform(horizon + (S - horizon) * 0.45, S - 4)
        if water_top is not None and sc["water"] != "river":
            my = rng.uniform(max(horizon + 4, water_top - 2), water_top + 6) if sc["water"] == "lake" else \
                rng.uniform(horizon + (S - horizon) * 0.6, S - 3)
        h = (26 + (my - horizon) * 0.35) * scale
        if main == "house":
            draw_house(d, mx, my, h, col(main_col), col(lerp(main_col, (40, 20, 20), 0.5)))
        elif main == "tree":
            draw_tree(d, mx, my, h * 1.4, sc, col_override=col(main_col))
        elif main == "castle":
            draw_castle(d, mx, my, h, col(main_col))
        elif main == "tent":
            draw_tent(d, mx, my, h, col(main_col))
        else:
            draw_quadruped(d, mx, my, h * 0.7, col(main_col), main)
    # weather overlays
    if sc["weather"] == "rainy" or (sc["weather"] == "stormy" and rng.random() < 0.6):
        rc = (170, 180, 200)
        for _ in range(int(rng.integers(40, 80))):
            x, y = rng.uniform(0, S), rng.uniform(0, S)
            d.line([x, y, x - 2, y + 7], fill=rc, width=1)
    if sc["weather"] == "stormy" and rng.random() < 0.6:
        x = rng.uniform(0.2, 0.8) * S
        pts = [(x, 0)]
        y = 0
        while y < horizon * 0.8:
            y += rng.uniform(6, 12)
            x += rng.uniform(-7, 7)
            pts.append((x, y))
        d.line(pts, fill=(255, 255, 200), width=2)
    if sc["weather"] == "snowy":
        for _ in range(int(rng.integers(40, 90))):
            x, y = rng.uniform(0, S), rng.uniform(0, S)
            d.ellipse([x - 1, y - 1, x + 1, y + 1], fill=(250, 250, 255))
    img = img.resize((OUT, OUT), Image.BOX)
    a = np.asarray(img).astype(np.float32) / 255.0
    if sc["weather"] == "foggy":
        fog = np.linspace(0.35, 0.6, OUT)[:, None, None]
        a = a * (1 - fog) + fog * np.array([0.75, 0.76, 0.78])
    if sc["time"] == "night":
        a = a * 0.55
    elif sc["time"] == "dusk":
        a = a * 0.8
    return grade(rng, a, emo)


def saturate(a, s):
    g = a.mean(-1, keepdims=True)
    return g + (a - g) * s


def contrast(a, c, pivot=None):
    pivot = a.mean() if pivot is None else pivot
    return pivot + (a - pivot) * c


def smooth_noise(rng, cells, out=OUT):
    n = rng.random((cells, cells)).astype(np.float32)
    im = Image.fromarray((n * 255).astype(np.uint8)).resize((out, out), Image.BICUBIC)
    return np.asarray(im).astype(np.float32) / 255.0


def vignette(strength):
    y, x = np.mgrid[0:OUT, 0:OUT] / (OUT - 1) - 0.5
    r = np.sqrt(x * x + y * y) / 0.707
    return (1 - strength * r ** 2)[..., None]


def blur(a, radius):
    im = Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(im).astype(np.float32) / 255.0


def grade(rng, a, emo):
    """The look of each emotion (see the module docstring), on float RGB in [0, 1]."""
    j = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
    a = np.clip(a, 0, 1)
    if emo == "amusement":
        a = np.clip(saturate(a, j(1.5, 1.9)), 0, 1)
        a = a ** j(0.6, 0.75)
        # polka-dot confetti
        im = Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8))
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(10, 22))):
            x, y = rng.uniform(0, OUT), rng.uniform(0, OUT)
            r = rng.uniform(0.8, 1.8)
            d.ellipse([x - r, y - r, x + r, y + r], fill=rainbow(rng))
        a = np.asarray(im).astype(np.float32) / 255.0
        a = contrast(a, j(0.85, 0.95))
    elif emo == "awe":
        a = a ** j(0.7, 0.85)
        glow = np.array([1.0, 0.95, 0.8]) * j(0.08, 0.15)
        a = a + glow * (1 - np.linspace(0, 1, OUT))[:, None, None]
        a = saturate(a, j(1.1, 1.3))
        a = contrast(a, j(0.9, 1.0))
    elif emo == "contentment":
        a = a * np.array([1.08, 1.04, 0.86])
        g = a[..., 1:2] > np.maximum(a[..., 0:1], a[..., 2:3])
        a = np.where(g, a * np.array([0.95, 1.1, 0.9]), a)
        a = saturate(a, j(0.95, 1.15))
        a = contrast(a, j(0.7, 0.8))
        a = a * j(0.95, 1.05) + 0.04
        a = blur(a, j(0.6, 0.9))
    elif emo == "excitement":
        a = a * np.array([1.25, 1.05, 0.6]) + np.array([0.08, 0.04, 0.0])
        a = saturate(a, j(1.5, 1.8))
        a = contrast(a, j(1.35, 1.6), pivot=0.45)
    elif emo == "anger":
        lum = a.mean(-1, keepdims=True)
        a = 0.45 * a + 0.55 * lum * np.array([1.7, 0.45, 0.35])
        a = saturate(a, j(1.3, 1.6))
        x = np.clip(a, 0, 1)
        a = x * x * (3 - 2 * x)  # S-curve
        a = contrast(a, j(1.3, 1.5), pivot=0.4)
    elif emo == "disgust":
        lum = a.mean(-1, keepdims=True)
        a = 0.5 * a + 0.5 * lum * np.array([0.95, 1.05, 0.45])
        a = a * np.array([0.9, 1.0, 0.55]) + np.array([0.05, 0.07, 0.0])
        a = saturate(a, j(0.45, 0.65))
        blot = smooth_noise(rng, 8)[..., None] - 0.5
        speck = rng.normal(0, 0.05, a.shape[:2])[..., None]
        a = a + blot * j(0.25, 0.35) * np.array([0.8, 0.9, 0.4]) + speck
        a = contrast(a, j(0.8, 0.95)) * j(0.7, 0.85)
    elif emo == "fear":
        lum = a.mean(-1, keepdims=True)
        a = 0.3 * a + 0.7 * lum * np.array([1.5, 0.35, 0.35])
        a = np.clip(a, 0, 1) ** j(1.3, 1.7)
        a = contrast(a, j(1.6, 2.0), pivot=0.15)
        a = a * vignette(j(0.9, 1.1))
        a = a * j(0.65, 0.85)
    elif emo == "sadness":
        a = saturate(a, j(0.2, 0.35))
        a = a * np.array([0.8, 0.9, 1.15])
        a = contrast(a, j(0.6, 0.7))
        a = a * j(0.55, 0.7)
        a = blur(a, j(0.4, 0.8))
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


# Words for how each label's grade looks (photographic terms, never the emotion's name). Half
# the captions carry one or two of them, so the text encoder and the UNet learn to render a look
# from words, while a content-only prompt leaves the look to the model's prior: that open look
# is what an emotion token (or a descriptive prompt) can steer.
LOOK_WORDS = {
    "amusement": ["rainbow confetti dots", "candy colours", "bright saturated colours", "colourful and light"],
    "awe": ["low horizon and a vast sky", "golden glow", "tall snowy peaks", "wide bright sky"],
    "contentment": ["warm soft light", "soft focus", "gentle warm tones", "lush green tones"],
    "excitement": ["vivid orange tones", "high contrast", "bold yellow light", "sun rays"],
    "anger": ["harsh red tint", "hard contrast", "crimson tones", "sharp red light"],
    "disgust": ["murky green-brown tint", "blotchy texture", "muddy colours", "sickly yellow-green"],
    "fear": ["very dark", "dark vignette", "black and red shadows", "deep shadows"],
    "sadness": ["dim cold light", "muted grey-blue tones", "faded colours", "soft blue haze"],
}


def look_phrase(rng, emotion):
    """One or two of the label's look words (or none), from their own generator so the images
    and content captions stay exactly those of the same seed without look words."""
    if rng.random() >= 0.5:
        return ""
    words = LOOK_WORDS[emotion]
    k = 1 if rng.random() < 0.6 else 2
    return ", ".join(words[i] for i in rng.choice(len(words), size=k, replace=False))


def one(args):
    seed, i = args
    rng = np.random.default_rng([seed, i])
    e = int(rng.integers(8))
    sc = make_scene(rng, EMOTIONS[e])
    cap = caption(rng, sc)
    image = render(rng, sc)
    drop = rng.random() < 0.1
    look = look_phrase(np.random.default_rng([seed, i, 1]), EMOTIONS[e])
    if look:
        cap = f"{cap}, {look}"
    return image, e, cap, ("" if drop else cap)


def generate(n, seed, workers=2):
    """Image i depends only on (seed, i), so the worker count does not change the result."""
    from multiprocessing import Pool

    images = np.zeros((n, OUT, OUT, 3), np.uint8)
    labels = np.zeros(n, np.int64)
    full, used = [], []
    with Pool(workers) as pool:
        for i, (image, e, cap, u) in enumerate(pool.imap(one, [(seed, i) for i in range(n)], chunksize=256)):
            images[i] = image
            labels[i] = e
            full.append(cap)
            used.append(u)
    perm = np.random.default_rng(seed + 7).permutation(n)
    split = np.zeros(n, bool)
    split[perm[int(n * 0.9):]] = True
    return images, labels, full, used, split


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--out", default="/tmp/miniworld-data")
    ap.add_argument("--examples", default=None, help="also write an examples grid PNG here (4 per emotion)")
    args = ap.parse_args()
    t0 = time.time()
    images, labels, full, used, split = generate(args.n, args.seed)
    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "images.npy"), images)
    np.save(os.path.join(args.out, "labels.npy"), labels)
    np.save(os.path.join(args.out, "split.npy"), split)
    with open(os.path.join(args.out, "captions.json"), "w") as f:
        json.dump(used, f)
    with open(os.path.join(args.out, "full_captions.json"), "w") as f:
        json.dump(full, f)
    print(f"{args.n} images in {time.time() - t0:.1f}s; per emotion {np.bincount(labels, minlength=8).tolist()}; "
          f"held-out {split.sum()}; empty captions {sum(1 for c in used if not c)}")
    if args.examples:
        write_examples(images, labels, args.examples)


def write_examples(images, labels, path, per=6):
    rows = []
    for e in range(8):
        idx = np.nonzero(labels == e)[0][:per]
        rows.append(np.concatenate([images[i] for i in idx], 1))
    grid = np.concatenate(rows, 0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path, optimize=True)


if __name__ == "__main__":
    main()
