"""An ipywidgets panel to step through a review view and tag images (stage 04).

The panel shows one image of a saved view at a time with its boxes (the
boxes with QA flags or evidence drawn thick), its QA flags and the evidence
that ranked it, and three buttons that give it a review tag (``fix``, ``ok``,
``exclude``, see :data:`platelab.review.REVIEW_TAGS`), stored in the FiftyOne
dataset at once so they persist and travel with exports. Its logic lives in
plain methods (:meth:`ReviewPanel.show`, :meth:`ReviewPanel.step`,
:meth:`ReviewPanel.tag`) that the buttons call, so it can be driven and
tested without a browser.
"""

import logging

import cv2

from platelab import review, visualize

logger = logging.getLogger(__name__)


class ReviewPanel:
    """Steps through a view of the review dataset and tags images.

    Args:
        dataset: the review dataset (a fiftyone Dataset)
        view: a saved view's name, a view, or None for the whole dataset
        advance: move on to the next image after tagging one
        max_width: the image's display width in pixels

    Attributes:
        sample_ids: the ids of the view's samples, in view order
        position: the index of the image shown
        widget: the ipywidgets box to display
    """

    def __init__(self, dataset, view=None, advance=True, max_width=720):
        import ipywidgets

        self.dataset = dataset
        self.advance = advance
        self.max_width = int(max_width)
        self.position = 0
        self._views = [None, *dataset.list_saved_views()]
        self.view_picker = ipywidgets.Dropdown(
            options=[("all images", "")] + [(name, name) for name in self._views[1:]],
            value=view if isinstance(view, str) else "",
            description="view",
        )
        self.image = ipywidgets.Image(format="png")
        self.info = ipywidgets.HTML()
        self.previous_button = ipywidgets.Button(description="◀ previous")
        self.next_button = ipywidgets.Button(description="next ▶")
        self.tag_buttons = {
            tag: ipywidgets.Button(description=tag, button_style=style)
            for tag, style in zip(review.REVIEW_TAGS, ("warning", "success", "danger"), strict=True)
        }
        self.previous_button.on_click(lambda _: self.step(-1))
        self.next_button.on_click(lambda _: self.step(1))
        for tag, button in self.tag_buttons.items():
            button.on_click(lambda _, tag=tag: self.tag(tag))
        self.view_picker.observe(self._on_view_change, names="value")
        self.widget = ipywidgets.VBox(
            [
                ipywidgets.HBox([self.view_picker, self.previous_button, self.next_button]),
                self.image,
                self.info,
                ipywidgets.HBox(list(self.tag_buttons.values())),
            ]
        )
        self.set_view(view)

    def set_view(self, view):
        """Switches to a saved view (by name), a view, or the whole dataset (None or "")."""
        if isinstance(view, str) and view:
            self.view = self.dataset.load_saved_view(view)
        elif view is None or view == "":
            self.view = self.dataset.view()
        else:
            self.view = view
        self.sample_ids = list(self.view.values("id"))
        self.position = 0
        self.show(0)

    def show(self, position):
        """Shows the image at ``position`` of the view (clamped to the view).

        Returns:
            the shown sample, or None when the view is empty
        """
        if not self.sample_ids:
            self.image.value = b""
            self.info.value = "<b>This view holds no images.</b>"
            return None
        self.position = max(0, min(int(position), len(self.sample_ids) - 1))
        sample = self.dataset[self.sample_ids[self.position]]
        self.image.value = self.render(sample)
        self.info.value = self._describe(sample)
        return sample

    def step(self, offset):
        """Moves ``offset`` images on (negative: back) and shows that image."""
        return self.show(self.position + int(offset))

    def tag(self, tag):
        """Gives the shown image a review tag (replacing its other review tag), saved at once.

        Returns:
            the tagged sample's id, or None when the view is empty
        """
        if not self.sample_ids:
            return None
        sample_id = self.sample_ids[self.position]
        review.set_tag(self.dataset, sample_id, tag)
        logger.info("tagged %s as %s", sample_id, tag)
        if self.advance and self.position < len(self.sample_ids) - 1:
            self.step(1)
        else:
            self.show(self.position)
        return sample_id

    def render(self, sample):
        """The sample's image with its boxes, PNG-encoded (flagged boxes thick)."""
        pixels = cv2.imread(sample.filepath, cv2.IMREAD_COLOR)
        if pixels is None:
            raise review.ReviewError(f"{sample.filepath}: image missing or unreadable")
        height, width = pixels.shape[:2]
        normal, flagged = [], []
        for detection in (sample["ground_truth"] or {"detections": []}).detections:
            x, y, box_width, box_height = detection.bounding_box
            item = {
                "label": detection.label,
                "bbox": [x * width, y * height, (x + box_width) * width, (y + box_height) * height],
            }
            suspicious = getattr(detection, "qa_flags", None) or getattr(
                detection, "evidence", None
            )
            (flagged if suspicious else normal).append(item)
        drawn = visualize.draw_objects(pixels, normal, thickness=1, show_labels=False)
        drawn = visualize.draw_objects(drawn, flagged, thickness=2, show_labels=True)
        if width > self.max_width:
            scale = self.max_width / width
            drawn = cv2.resize(
                drawn, (self.max_width, round(height * scale)), interpolation=cv2.INTER_AREA
            )
        ok, encoded = cv2.imencode(".png", drawn)
        return encoded.tobytes() if ok else b""

    def _describe(self, sample):
        import html

        tags = [tag for tag in sample.tags if tag in review.REVIEW_TAGS]
        reasons = "".join(
            f"<li>{html.escape(item)}</li>" for item in (sample["suspicion_reasons"] or [])[:5]
        )
        flags = ", ".join(sample["qa_flags"] or []) or "none"
        return (
            f"<b>{self.position + 1} / {len(self.sample_ids)}</b> · "
            f"{html.escape(str(sample['batch']))}/{html.escape(str(sample['image_name']))} · "
            f"source {html.escape(str(sample['source_id']))} · suspicion {sample['suspicion'] or 0:.2f} · "
            f"review tag: <b>{', '.join(tags) or 'none'}</b><br>QA flags: {html.escape(flags)}"
            + (f"<ul>{reasons}</ul>" if reasons else "")
        )

    def _on_view_change(self, change):
        self.set_view(change["new"] or None)
