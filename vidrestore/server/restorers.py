"""The server's restorer, loaded once, and its per-request variants that share the loaded weights.

A request may ask for another fidelity blend, for the centre face only, for no restoration
(`model=none`), for a larger output (`upscale`, `bg_upsampler`) or for the other paste-back mask
(`mask`); each combination is derived from the one loaded Restorer (`Restorer.derive`), so the
detector and the models stay one instance in memory. A Real-ESRGAN background or a parsing mask is
available when the server was started with it. Factors are kept to UPSCALE_DECIMALS places, so the
variants made stay few whatever factors requests send.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from vidrestore.errors import VidrestoreError
from vidrestore.pipeline.options import NO_MODEL, RestoreOptions
from vidrestore.pipeline.restorer_api import Restorer
from vidrestore.server.errors import ApiError

UPSCALE_DECIMALS = 2  # a request's factor is rounded to this many places (one variant per rounded factor)


@dataclass(frozen=True)
class Variant:
    """What a request asks of the restorer: which model (the loaded one or none), blend, centre face only,
    output size and background, paste-back mask."""

    model: str
    blend: float
    only_center_face: bool
    upscale: float = 1.0
    bg_upsampler: str | None = None
    mask: str = "box"

    def overrides(self) -> dict[str, object]:
        """The RestoreOptions fields of the variant other than the model."""
        return {"blend": self.blend, "only_center_face": self.only_center_face, "upscale": self.upscale,
                "bg_upsampler": self.bg_upsampler, "mask": self.mask}


def model_name(model: str) -> str:
    """The API name of a model option: a checkpoint name as is, a checkpoint path by its file stem."""
    text = str(model)
    if "/" in text or "\\" in text or text.endswith((".pth", ".pt")):
        return Path(text).stem
    return text


class SharedRestorer:
    """One loaded Restorer and the variants requests ask for, made on first use and kept."""

    def __init__(self, base: Restorer) -> None:
        self.base = base
        self.name = model_name(base.options.model) if base.options.restores else NO_MODEL
        o = base.options
        self.default = Variant(self.name, o.blend, o.only_center_face, o.upscale, o.bg_upsampler, o.mask)
        self._variants: dict[Variant, Restorer] = {self.default: base}
        self._lock = threading.Lock()

    @property
    def models(self) -> list[str]:
        """Model names a request may ask for."""
        return sorted({self.name, NO_MODEL})

    def variant_for(self, model: str | None, blend: float | None, only_center_face: bool | None,
                    upscale: float | None = None, bg_upsampler: str | None = None,
                    mask: str | None = None) -> Variant:
        """The variant of a request's options (unset ones are the server's); 400 for a model, background
        upsampler or mask not loaded, or options that do not go together."""
        model = self.name if model is None else model
        if model.lower() == NO_MODEL:
            model = NO_MODEL
        elif model != self.name:
            raise ApiError(400, "unknown_model",
                           f"model {model!r} is not loaded here (available: {', '.join(self.models)})")
        d = self.default
        factor = d.upscale if upscale is None else round(float(upscale), UPSCALE_DECIMALS)
        variant = Variant(model,
                          d.blend if blend is None else float(blend),
                          d.only_center_face if only_center_face is None else bool(only_center_face),
                          factor,
                          self._background(factor) if bg_upsampler is None else bg_upsampler,
                          d.mask if mask is None else mask)
        self.restorer(variant)  # made (and checked) now, so a request that cannot be served is a 400
        return variant

    def _background(self, factor: float) -> str | None:
        """The server's background upsampler for a request that names none: at 1x a Real-ESRGAN one has
        nothing to do, so it is left out ("none": no network) rather than refused."""
        if factor == 1.0 and self.default.bg_upsampler == "realesrgan":
            return "none"
        return self.default.bg_upsampler

    def restorer(self, variant: Variant) -> Restorer:
        """The Restorer of a variant, sharing the loaded detector and model."""
        with self._lock:
            found = self._variants.get(variant)
            if found is None:
                found = self._variants[variant] = self._make(variant)
            return found

    def video_options(self, variant: Variant) -> RestoreOptions:
        """The options of a video job for a variant."""
        model = NO_MODEL if variant.model == NO_MODEL else self.base.options.model
        return self.base.options.with_overrides({"model": model, **variant.overrides()})

    def _make(self, variant: Variant) -> Restorer:
        """A Restorer for a variant, derived from the loaded one; 400 when it cannot be made here."""
        try:
            return self.base.derive(restores=variant.model != NO_MODEL, **variant.overrides())
        except VidrestoreError as exc:
            raise ApiError(400, "unavailable_option", str(exc)) from None
