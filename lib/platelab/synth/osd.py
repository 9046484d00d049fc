"""On-screen displays (OSD): the time stamp a fixed camera burns into its frames.

Security and traffic cameras write the date and time (and often the camera's name)
into a corner of every frame: light text, 8-23 px high at 720p (often 8-11), with a thin black
outline, on a dark box or plain. To a plate detector these rows of characters look
like plates, so scenes may show one (``details=("osd",)``, see
:func:`platelab.synth.video_specs`); it is never annotated (a hard negative). The
dashcam vantage keeps its own overlay (``layouts._overlay``).

:func:`random_osd` draws the look of a video's OSD from a generator of its own;
:meth:`Osd.draw` draws it over a frame at a time (the seconds advance) and clears the
id map under it, so that objects beneath count as occluded there; :func:`over` adds
it to a scene's foreground.
"""

import dataclasses
import datetime
import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)

PROBABILITY = 0.8
"""Share of the videos asked for an OSD that show one (some cameras have it off)."""
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_COMPLEX,
)
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
COLOURS = ((245, 245, 245), (222, 222, 222), (200, 200, 200), (40, 232, 245))
"""BGR text colours: white, light grey, grey, yellow."""
STYLES = ("outline", "box", "plain")
DATE_FORMATS = ("Y-m-d", "m/d/Y", "d.m.Y", "d-MON-Y", "Y/m/d", "m-d-Y")
"""Date layouts: 2014-05-13, 05/13/2014, 13.05.2014, 13-MAY-2014, 2014/05/13, 05-13-2014."""
CAMERA_NAMES = (
    "CAM {n:02d}",
    "CAM{n:02d}",
    "Camera {n}",
    "CH{n}",
    "CH {n:02d}",
    "IPC{n}",
    "NORTH GATE",
    "SOUTH ENTRANCE",
    "MAIN GATE",
    "LOT {letter}",
    "PARKING {n}",
    "DRIVEWAY",
    "LOADING DOCK",
    "FRONT",
    "EXIT LANE {n}",
    "ENTRY {n}",
    "MAIN ST",
    "5TH AVE / ELM",
    "HWY {road} NB",
    "I-{road} EB",
)
"""Camera-name patterns (``{n}``: a number, ``{letter}``: a letter, ``{road}``: a road)."""

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_ALPHA_LIMIT = 64
"""Text (or outline) alpha from which a pixel counts as covered (id map cleared)."""


@dataclasses.dataclass(frozen=True)
class Osd:
    """The look of one camera's on-screen display.

    Attributes:
        start: the clock at time 0 of the video
        date_format: one of :data:`DATE_FORMATS`
        twelve_hour: whether the time reads ``08:58:47 PM`` (else 24-hour)
        weekday: whether a weekday follows the date (``TUE``)
        two_lines: date over time (else both on one line)
        name: the camera's name, or ``""`` for none
        name_place: where the name goes: ``above`` or ``below`` the time stamp, or
            ``apart`` (in the corner ``name_corner``)
        corner: the time stamp's corner, one of :data:`CORNERS`
        name_corner: the name's corner where ``name_place`` is ``apart``
        margin: (x, y) pixels between the text block and the frame edges
        font: an OpenCV Hershey font
        scale: its cv2 font scale
        thickness: stroke width in pixels
        antialiased: whether strokes are anti-aliased (else hard pixels)
        colour: BGR text colour
        style: ``outline`` (a black rim), ``box`` (on a dark semi-opaque box) or ``plain``
        outline: the rim's width in pixels (``outline`` style)
        box_alpha: the box's opacity (``box`` style)
    """

    start: datetime.datetime
    date_format: str
    twelve_hour: bool
    weekday: bool
    two_lines: bool
    name: str
    name_place: str
    corner: str
    name_corner: str
    margin: tuple
    font: int
    scale: float
    thickness: int
    antialiased: bool
    colour: tuple
    style: str
    outline: int
    box_alpha: float

    def blocks(self, time):
        """The text to draw at a time in seconds: ``[(corner, [line, ...]), ...]``."""
        stamp = self.start + datetime.timedelta(seconds=int(time))
        date = _format_date(stamp, self.date_format)
        if self.weekday:
            date = f"{date} {_WEEKDAYS[stamp.weekday()]}"
        if self.twelve_hour:
            hour = stamp.hour % 12 or 12
            clock = f"{hour:02d}:{stamp.minute:02d}:{stamp.second:02d} {'PM' if stamp.hour >= 12 else 'AM'}"
        else:
            clock = f"{stamp.hour:02d}:{stamp.minute:02d}:{stamp.second:02d}"
        lines = [date, clock] if self.two_lines else [f"{date}  {clock}"]
        if not self.name:
            return [(self.corner, lines)]
        if self.name_place == "above":
            return [(self.corner, [self.name, *lines])]
        if self.name_place == "below":
            return [(self.corner, [*lines, self.name])]
        return [(self.corner, lines), (self.name_corner, [self.name])]

    def draw(self, frame, id_map, time):
        """Draws the OSD over a frame (in place) and clears the id map under it.

        Args:
            frame: BGR uint8 image
            id_map: the frame's int32 id map (0 where the OSD covers an object)
            time: the frame's time in seconds (the clock advances by whole seconds)

        Returns:
            the (x0, y0, x1, y1) pixel boxes drawn, one per text block
        """
        return [
            self._draw_block(frame, id_map, corner, lines) for corner, lines in self.blocks(time)
        ]

    def _draw_block(self, frame, id_map, corner, lines):
        height, width = frame.shape[:2]
        sizes = [cv2.getTextSize(line, self.font, self.scale, self.thickness)[0] for line in lines]
        text_height = max(size[1] for size in sizes)
        pitch = int(round(text_height * 1.55)) + self.thickness
        pad = max(self.outline, self.thickness) + 2
        if self.style == "box":
            pad += max(2, int(round(text_height * 0.3)))
        block_width = max(size[0] for size in sizes) + 2 * pad
        block_height = pitch * (len(lines) - 1) + text_height + 2 * pad + self.thickness
        right = corner.endswith("right")
        bottom = corner.startswith("bottom")
        x0 = width - self.margin[0] - block_width if right else self.margin[0]
        y0 = height - self.margin[1] - block_height if bottom else self.margin[1]
        alpha = np.zeros((block_height, block_width), dtype=np.uint8)
        line_type = cv2.LINE_AA if self.antialiased else cv2.LINE_8
        for number, (line, size) in enumerate(zip(lines, sizes, strict=True)):
            left = block_width - pad - size[0] if right else pad
            baseline_y = pad + text_height + number * pitch
            cv2.putText(
                alpha,
                line,
                (left, baseline_y),
                self.font,
                self.scale,
                255,
                self.thickness,
                line_type,
            )
        # The block clipped to the frame (a large text on a small frame may not fit).
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + block_width, width), min(y0 + block_height, height)
        if fx1 <= fx0 or fy1 <= fy0:
            return (fx0, fy0, fx0, fy0)
        alpha = alpha[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
        covered = alpha >= _ALPHA_LIMIT
        if self.style == "box":
            region *= 1.0 - self.box_alpha
            covered[:] = True
        elif self.style == "outline":
            size = 2 * self.outline + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
            rim = cv2.dilate(alpha, kernel).astype(np.float32)[..., None] / 255.0
            region *= 1.0 - rim
            covered |= rim[..., 0] * 255.0 >= _ALPHA_LIMIT
        ink = alpha.astype(np.float32)[..., None] / 255.0
        region = region * (1.0 - ink) + np.asarray(self.colour, dtype=np.float32) * ink
        frame[fy0:fy1, fx0:fx1] = np.clip(np.round(region), 0, 255).astype(np.uint8)
        id_map[fy0:fy1, fx0:fx1][covered] = 0
        return (fx0, fy0, fx1, fy1)


def random_osd(rng, width, height):
    """Draws the OSD of one video, or None (about a fifth of the videos show none).

    Args:
        rng: the OSD's own numpy Generator (never the scene's: see scene.build_scene)
        width: frame width in pixels
        height: frame height in pixels

    Returns:
        an :class:`Osd` or None
    """
    shown = rng.random() < PROBABILITY
    start = datetime.datetime(
        int(rng.integers(2009, 2025)),
        int(rng.integers(1, 13)),
        int(rng.integers(1, 29)),
        int(rng.integers(0, 24)),
        int(rng.integers(0, 60)),
        int(rng.integers(0, 60)),
    )
    font = FONTS[int(rng.choice(len(FONTS), p=(0.4, 0.25, 0.2, 0.15)))]
    # Real cameras write small: 1.2-1.6 % of the frame height is common (8-11 px at 720p).
    text_height = max(7.0, height * float(rng.uniform(0.011, 0.032)))
    reference = cv2.getTextSize("0123456789", font, 1.0, 1)[0][1]
    scale = text_height / reference
    stroke = 0.09 if font == cv2.FONT_HERSHEY_PLAIN else 0.075
    thickness = max(1, int(round(text_height * stroke * float(rng.uniform(0.8, 1.4)))))
    corner = CORNERS[int(rng.choice(len(CORNERS), p=(0.45, 0.25, 0.15, 0.15)))]
    others = [other for other in CORNERS if other != corner]
    name = ""
    if rng.random() < 0.45:
        pattern = CAMERA_NAMES[int(rng.integers(len(CAMERA_NAMES)))]
        name = pattern.format(
            n=int(rng.integers(1, 17)),
            letter="ABCDEFGH"[int(rng.integers(8))],
            road=(5, 10, 15, 35, 80, 90, 95, 101, 405)[int(rng.integers(9))],
        )
    style = STYLES[int(rng.choice(len(STYLES), p=(0.5, 0.3, 0.2)))]
    osd = Osd(
        start=start,
        date_format=DATE_FORMATS[int(rng.integers(len(DATE_FORMATS)))],
        twelve_hour=bool(rng.random() < 0.2),
        weekday=bool(rng.random() < 0.2),
        two_lines=bool(rng.random() < 0.35),
        name=name,
        name_place=("above", "below", "apart")[int(rng.integers(3))],
        corner=corner,
        name_corner=others[int(rng.integers(len(others)))],
        margin=(
            int(round(width * float(rng.uniform(0.002, 0.025)))),
            int(round(height * float(rng.uniform(0.002, 0.025)))),
        ),
        font=font,
        scale=float(scale),
        thickness=thickness,
        antialiased=bool(rng.random() < 0.6),
        colour=COLOURS[int(rng.choice(len(COLOURS), p=(0.5, 0.2, 0.1, 0.2)))],
        style=style,
        outline=int(rng.integers(1, 3)),
        box_alpha=float(rng.uniform(0.45, 0.8)),
    )
    return osd if shown else None


def over(foreground, osd):
    """A scene foreground that draws ``foreground`` (if any), then the OSD over it.

    Args:
        foreground: ``foreground(frame, id_map, index, time)`` or None
        osd: an :class:`Osd` or None (then ``foreground`` is returned as it is)

    Returns:
        the composed ``foreground(frame, id_map, index, time)``
    """
    if osd is None:
        return foreground

    def draw(frame, id_map, index, time):
        if foreground is not None:
            foreground(frame, id_map, index, time)
        osd.draw(frame, id_map, time)

    return draw


def _format_date(stamp, layout):
    """The date of ``stamp`` in one of :data:`DATE_FORMATS` (``d-MON-Y``: 13-MAY-2014)."""
    if layout not in DATE_FORMATS:
        raise ValueError(f"unknown date format {layout!r} (expected one of {DATE_FORMATS})")
    fields = {
        "Y": f"{stamp.year:04d}",
        "m": f"{stamp.month:02d}",
        "d": f"{stamp.day:02d}",
        "MON": _MONTHS[stamp.month - 1],
    }
    separator = next(character for character in layout if character in "-/.")
    return separator.join(fields[part] for part in layout.split(separator))
