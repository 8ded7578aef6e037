"""GFP-GAN training loop (specs/gfpgan.md 3.3-3.5): G, StyleGAN2 D, three component Ds, EMA, exact resume.

One iteration (1-based count t):
  G step: pixel L1, pyramid L1 (until `pyramid_until`), perceptual + style, GAN, component GAN + style,
  identity -> Adam(G); EMA update of G's parameters; D step: logistic loss (+ lazy R1 when t % r1_every == 0)
  -> Adam(D); component D steps -> Adam(each). Then every scheduler steps.

A checkpoint holds everything a resumed run needs (weights, EMA, optimisers, schedulers, RNG states,
iteration, best validation score) and only tensors and plain values, so `load_restorer` reads its
`params_ema` with weights_only=True. Batches and degradations depend only on (seed, iteration), so a run
stopped and resumed gives the same weights as a run straight through. Ctrl-C (or SIGTERM) stops
between iterations and saves latest.pth. With `data.degrade_on: device` the loader only draws the
degradation parameters and the batch is degraded on the training device (degradations_torch).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
import signal
import threading
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from vidrestore.atomic import atomic_path
from vidrestore.device import resolve_device
from vidrestore.errors import VidrestoreError, error_line
from vidrestore.models.gfpgan import GFPGAN, GFPGANConfig
from vidrestore.models.loading import read_checkpoint
from vidrestore.train.arcface import gray_for_identity, load_arcface
from vidrestore.train.dataset import COMPONENTS, FaceDataset, IterationBatchSampler, PairedFaces, collate_samples
from vidrestore.train.degradations import DegradationConfig
from vidrestore.train.degradations_torch import degrade_batch
from vidrestore.train.discriminators import FacialComponentDiscriminator, StyleGAN2Discriminator
from vidrestore.train.losses import (
    component_bce,
    component_style_loss,
    crop_component,
    discriminator_gan_loss,
    generator_gan_loss,
    identity_loss,
    lazy_r1_loss,
    pyramid_loss,
)
from vidrestore.train.metrics import psnr
from vidrestore.train.perceptual import DEFAULT_LAYER_WEIGHTS, PerceptualLoss

log = logging.getLogger(__name__)

EMA_DECAY = 0.5 ** (32 / 10000)
CHECKPOINT_FORMAT = 2  # 2: equalized-lr discriminators, per-parameter generator learning rates
DEGRADE_ON = ("loader", "device")


# --- configuration -------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Where the faces are and how they are loaded."""

    train: str = ""
    landmarks: str | None = None
    val_gt: str | None = None
    val_lq: str | None = None
    val_seed: int = 0
    val_limit: int = 0
    use_hflip: bool = True
    cache: bool = False
    num_workers: int = 4
    degrade_on: str = "loader"  # "loader": cv2 in the workers; "device": torch on the training device


@dataclass(frozen=True)
class GeneratorConfig(GFPGANConfig):
    """The GFPGAN configuration to train (channel multiplier 1, the training recipe's) and what to start it from."""

    channel_multiplier: float = 1
    pretrained: str | None = None
    decoder: str | None = None
    fix_decoder: bool = True


@dataclass
class DiscriminatorConfig:
    """StyleGAN2 discriminator width."""

    channel_multiplier: float = 1
    narrow: float = 1


@dataclass
class LossConfig:
    """Loss weights and switches (the paper's values)."""

    pixel_weight: float = 0.1
    pyramid_weight: float = 1.0
    pyramid_until: int = 50000
    perceptual_weight: float = 1.0
    style_weight: float = 50.0
    perceptual_layers: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LAYER_WEIGHTS))
    vgg_weights: str | None = None
    gan_weight: float = 0.1
    r1_weight: float = 10.0
    r1_every: int = 16
    use_components: bool = True
    component_gan_weight: float = 1.0
    component_style_weight: float = 200.0
    eye_size: int = 80
    mouth_size: int = 120
    identity_weight: float = 10.0
    arcface_weights: str | None = None


@dataclass
class OptimConfig:
    """Adam settings and the MultiStepLR schedule; D's lazy-R1 correction is applied in code."""

    lr_g: float = 2e-3  # for the paper's equalized-lr layers; scaled per parameter (generator_param_groups)
    lr_mlp: float = 0.01  # learning-rate multiplier of the style MLP (StyleGAN2)
    betas_g: tuple[float, float] = (0.0, 0.99)
    lr_d: float = 2e-3
    betas_d: tuple[float, float] = (0.0, 0.99)
    lr_component: float = 2e-3
    betas_component: tuple[float, float] = (0.9, 0.99)
    milestones: tuple[int, ...] = (600000, 700000)
    gamma: float = 0.5
    ema_decay: float = EMA_DECAY


@dataclass
class RunConfig:
    """Length of the run, batch, logging, validation and checkpoint cadence."""

    out_dir: str = "experiments/gfpgan"
    seed: int = 0
    batch_size: int = 3
    total_iter: int = 800000
    log_every: int = 100
    val_every: int = 5000
    save_every: int = 5000
    bf16: bool = True
    tensorboard: bool = True
    device: str = "auto"


@dataclass
class TrainConfig:
    """Everything a training run needs, read from one YAML file."""

    data: DataConfig = field(default_factory=DataConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    network_g: GeneratorConfig = field(default_factory=GeneratorConfig)
    network_d: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from nested dicts, refusing unknown sections and keys."""
        return _dataclass_from_dict(cls, raw or {}, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """Read a YAML config file; relative data paths stay relative to the working directory."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise VidrestoreError(f"cannot read training config {path}: {error_line(exc)}") from None
        return cls.from_dict(raw, str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), e.g. to store in a checkpoint."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _dataclass_from_dict(cls: type, raw: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass `cls` from `raw`, recursing into dataclass fields; tuples from lists."""
    if not isinstance(raw, dict):
        raise VidrestoreError(f"{where}: expected a mapping, found {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise VidrestoreError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else fields[name].default
        if dataclasses.is_dataclass(default):
            value = _dataclass_from_dict(type(default), value or {}, f"{where}: {name}")
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


# --- helpers -------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    """The global random states, as tensors and plain values (weights_only-loadable)."""
    version, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": version, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore the states saved by rng_states()."""
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in states["python"]))
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def weights_file(name_or_path: str | None) -> Path | None:
    """The local file of an auxiliary weights name or path (None stays None: random weights)."""
    if not name_or_path:
        return None
    from vidrestore.weights import find_weights

    return find_weights(name_or_path)


def save_atomically(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def scaled_patch_size(size_at_512: int, out_size: int) -> int:
    """A component patch size (80 eyes, 120 mouth at 512) scaled to out_size, a multiple of 4, at least 8."""
    return max(8, int(round(size_at_512 * out_size / 512 / 4)) * 4)


def _to_hwc01(image: torch.Tensor) -> np.ndarray:
    """(3,H,W) [-1,1] -> (H,W,3) [0,1] float32 on the CPU."""
    return ((image.detach().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()


def _check_finite(logs: dict[str, float], iteration: int, out_dir: Path) -> None:
    """Stop a diverged run before it writes a checkpoint: which loss went non-finite, and where."""
    bad = [name for name, value in logs.items() if not math.isfinite(value)]
    if bad:
        raise VidrestoreError(
            f"training diverged at iteration {iteration}: {', '.join(bad)} not finite; lower the learning "
            f"rates or loss weights, or resume from an earlier checkpoint in {out_dir}"
        )


def equalized_lr_factor(name: str, param: torch.Tensor, lr_mlp: float) -> float:
    """Learning-rate factor that makes Adam step a pre-scaled (clean) parameter as the paper's equalized layer.

    The released clean generator stores weights already multiplied by 1/sqrt(fan_in) (and the style MLP's
    by lr_mlp too); the paper trained them as N(0,1) weights scaled at run time. Adam's step is about lr
    in parameter units, so the same training needs lr x that scale here. Biases, noise strengths and the
    constant input were never scaled.
    """
    factor = 1.0
    is_weight = param.ndim >= 2 and not name.endswith(".bias") and "constant_input" not in name
    if is_weight:
        per_output = param[0, 0] if param.ndim == 5 else param[0]  # modulated: (1, out, in, k, k)
        factor = 1 / math.sqrt(per_output.numel())
    if ".style_mlp." in name:
        factor *= lr_mlp
    return factor


def generator_param_groups(net: nn.Module, lr: float, lr_mlp: float) -> list[dict[str, Any]]:
    """Adam parameter groups of the trainable generator parameters, one per learning rate."""
    groups: dict[float, list[torch.Tensor]] = {}
    for name, param in net.named_parameters():
        if param.requires_grad:
            groups.setdefault(lr * equalized_lr_factor(name, param, lr_mlp), []).append(param)
    return [{"params": params, "lr": group_lr} for group_lr, params in sorted(groups.items())]


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM while training, so the loop stops between iterations (resumable)."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def request(signum: int, _frame: Any) -> None:
        if requested.is_set():  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        log.warning("stop requested: finishing this iteration and saving a checkpoint (again to abort)")
        requested.set()

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def set_requires_grad(nets: Iterable[nn.Module], flag: bool) -> None:
    for net in nets:
        for param in net.parameters():
            param.requires_grad = flag


# --- trainer -------------------------------------------------------------------------------------


class Trainer:
    """Builds the networks, losses and optimisers of a TrainConfig and runs, saves, resumes and validates."""

    def __init__(self, cfg: TrainConfig, device: str | torch.device | None = None) -> None:
        self.cfg = cfg
        if cfg.data.degrade_on not in DEGRADE_ON:
            raise VidrestoreError(f"data.degrade_on must be one of {', '.join(DEGRADE_ON)}, not {cfg.data.degrade_on!r}")
        self.device = torch.device(device) if device is not None else resolve_device(cfg.run.device)
        seed_everything(cfg.run.seed)
        self.iteration = 0
        self.best_metric = -math.inf
        self.use_bf16 = cfg.run.bf16 and self.device.type == "cuda"
        self._build_networks()
        self._build_optimizers()
        self._writer = None

    # construction

    def _build_networks(self) -> None:
        g, losses = self.cfg.network_g, self.cfg.losses
        self.net_g = GFPGAN.from_config(g, decoder_load_path=weights_file(g.decoder), fix_decoder=g.fix_decoder)
        if g.pretrained:
            self._load_pretrained_generator(g.pretrained)
        self.net_g.to(self.device).train()
        self.net_g_ema = copy.deepcopy(self.net_g).eval()
        for param in self.net_g_ema.parameters():
            param.requires_grad = False
        self.net_d = StyleGAN2Discriminator(g.out_size, self.cfg.network_d.channel_multiplier,
                                            self.cfg.network_d.narrow).to(self.device).train()
        self.net_d_components = nn.ModuleDict(
            {name: FacialComponentDiscriminator() for name in COMPONENTS} if losses.use_components else {}
        ).to(self.device).train()
        use_vgg = losses.perceptual_weight > 0 or losses.style_weight > 0
        self.perceptual = (PerceptualLoss(losses.perceptual_layers, losses.perceptual_weight, losses.style_weight,
                                          weights_file(losses.vgg_weights)).to(self.device) if use_vgg else None)
        self.identity_net = (load_arcface(weights_file(losses.arcface_weights)).to(self.device)
                             if losses.identity_weight > 0 else None)
        for name, net, path in (("VGG19", self.perceptual, losses.vgg_weights),
                                ("ArcFace", self.identity_net, losses.arcface_weights)):
            if net is not None and not path:
                log.warning("%s has random weights (no weights file configured): fine for tests, not for training", name)
        self.eye_size = scaled_patch_size(losses.eye_size, g.out_size)
        self.mouth_size = scaled_patch_size(losses.mouth_size, g.out_size)

    def _load_pretrained_generator(self, name_or_path: str) -> None:
        """Fine-tuning: start G from a released or trained checkpoint (its EMA weights)."""
        path = weights_file(name_or_path)
        state = read_checkpoint(path)
        try:
            self.net_g.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise VidrestoreError(
                f"{path} does not fit network_g {self.net_g.config}: {error_line(exc)}"
            ) from None
        if self.cfg.network_g.fix_decoder:
            for param in self.net_g.stylegan_decoder.parameters():
                param.requires_grad = False
        log.info("generator initialised from %s", path)

    def _build_optimizers(self) -> None:
        o, r1_every = self.cfg.optim, self.cfg.losses.r1_every
        ratio = r1_every / (r1_every + 1)
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "g": torch.optim.Adam(generator_param_groups(self.net_g, o.lr_g, o.lr_mlp), lr=o.lr_g,
                                  betas=tuple(o.betas_g)),
            "d": torch.optim.Adam(self.net_d.parameters(), lr=o.lr_d * ratio,
                                  betas=(o.betas_d[0] ** ratio, o.betas_d[1] ** ratio)),
        }
        for name, net in self.net_d_components.items():
            self.optimizers[name] = torch.optim.Adam(net.parameters(), lr=o.lr_component,
                                                     betas=tuple(o.betas_component))
        self.schedulers = {
            name: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(o.milestones), gamma=o.gamma)
            for name, opt in self.optimizers.items()
        }

    def _autocast(self) -> AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_bf16 else nullcontext()

    # one iteration

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One iteration of G, EMA, D and component-D updates; returns the logged loss values."""
        self.iteration += 1
        gt = batch["gt"].to(self.device)
        lq = batch["lq"].to(self.device) if "lq" in batch else self._degrade_on_device(gt, batch["degradation"])
        logs = self._generator_step(lq, gt, batch)
        self._update_ema()
        logs.update(self._discriminator_step(gt))
        logs.update(self._component_discriminator_steps())
        for scheduler in self.schedulers.values():
            scheduler.step()
        return logs

    @torch.no_grad()
    def _degrade_on_device(self, gt: torch.Tensor, params: list) -> torch.Tensor:
        """LQ of a [-1,1] GT batch, degraded on the training device with the parameters the loader drew."""
        return degrade_batch((gt + 1) / 2, params) * 2 - 1

    def _generator_step(self, lq: torch.Tensor, gt: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        set_requires_grad([self.net_d, self.net_d_components], False)
        self.optimizers["g"].zero_grad(set_to_none=True)
        with self._autocast():
            output, out_rgbs = self.net_g(lq, return_rgb=True)
        output32 = output.float()
        terms = self.generator_losses(output32, out_rgbs, gt, batch)
        total = sum(terms.values())
        total.backward()
        self.optimizers["g"].step()
        self._output = output32.detach()
        return {name: float(value.detach()) for name, value in terms.items()} | {"l_g_total": float(total.detach())}

    def generator_losses(self, output: torch.Tensor, out_rgbs: list[torch.Tensor], gt: torch.Tensor,
                         batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every weighted G loss term of this iteration, by BasicSR log name."""
        losses = self.cfg.losses
        terms: dict[str, torch.Tensor] = {"l_g_pix": torch.nn.functional.l1_loss(output, gt) * losses.pixel_weight}
        pyramid_weight = losses.pyramid_weight if self.iteration <= losses.pyramid_until else 1e-12
        terms["l_p_pyramid"] = pyramid_loss(out_rgbs, gt) * pyramid_weight
        with self._autocast():
            if self.perceptual is not None:
                terms["l_g_percep"], terms["l_g_style"] = self.perceptual(output, gt)
            fake_pred = self.net_d(output)
        terms["l_g_gan"] = generator_gan_loss(fake_pred.float()) * losses.gan_weight
        if losses.use_components:
            terms.update(self._component_generator_losses(output, gt, batch))
        if self.identity_net is not None:
            emb_out = self.identity_net(gray_for_identity(output))
            with torch.no_grad():
                emb_gt = self.identity_net(gray_for_identity(gt))
            terms["l_identity"] = identity_loss(emb_out, emb_gt) * losses.identity_weight
        return terms

    def _component_patches(self, images: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Left eye, right eye and mouth patches of each image, cut with roi_align."""
        sizes = {"left_eye": self.eye_size, "right_eye": self.eye_size, "mouth": self.mouth_size}
        return {name: crop_component(images, batch[f"loc_{name}"].to(self.device), sizes[name]) for name in COMPONENTS}

    def _component_generator_losses(self, output: torch.Tensor, gt: torch.Tensor,
                                     batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = self.cfg.losses
        fake = self._component_patches(output, batch)
        real = self._component_patches(gt, batch)
        terms, style = {}, output.new_zeros(())
        for name in COMPONENTS:
            net = self.net_d_components[name]
            pred, feats = net(fake[name], return_feats=True)
            terms[f"l_g_gan_{name}"] = component_bce(pred, True) * losses.component_gan_weight
            if losses.component_style_weight > 0:
                _, feats_gt = net(real[name], return_feats=True)
                style = style + component_style_loss(feats, feats_gt)
        if losses.component_style_weight > 0:
            terms["l_g_comp_style_loss"] = style * losses.component_style_weight
        self._patches = ({k: v.detach() for k, v in fake.items()}, real)
        return terms

    def _update_ema(self) -> None:
        """EMA of G's parameters (buffers are the fixed noise maps and stay as they are)."""
        decay = self.cfg.optim.ema_decay
        ema_params = dict(self.net_g_ema.named_parameters())
        with torch.no_grad():
            for name, param in self.net_g.named_parameters():
                ema_params[name].mul_(decay).add_(param, alpha=1 - decay)

    def _discriminator_step(self, gt: torch.Tensor) -> dict[str, float]:
        losses = self.cfg.losses
        set_requires_grad([self.net_d], True)
        self.optimizers["d"].zero_grad(set_to_none=True)
        with self._autocast():
            fake_pred = self.net_d(self._output)
            real_pred = self.net_d(gt)
        l_d = discriminator_gan_loss(real_pred.float(), fake_pred.float())
        l_d.backward()
        logs = {"l_d": float(l_d.detach()), "real_score": float(real_pred.detach().float().mean()),
                "fake_score": float(fake_pred.detach().float().mean())}
        if self.iteration % losses.r1_every == 0:
            real = gt.detach().requires_grad_(True)
            l_d_r1 = lazy_r1_loss(self.net_d(real), real, losses.r1_weight, losses.r1_every)
            l_d_r1.backward()
            logs["l_d_r1"] = float(l_d_r1.detach())
        self.optimizers["d"].step()
        return logs

    def _component_discriminator_steps(self) -> dict[str, float]:
        if not self.cfg.losses.use_components:
            return {}
        set_requires_grad([self.net_d_components], True)
        fake, real = self._patches
        logs = {}
        for name in COMPONENTS:
            net, opt = self.net_d_components[name], self.optimizers[name]
            opt.zero_grad(set_to_none=True)
            fake_pred, _ = net(fake[name])
            real_pred, _ = net(real[name])
            loss = component_bce(real_pred, True) + component_bce(fake_pred, False)
            loss.backward()
            opt.step()
            logs[f"l_d_{name}"] = float(loss.detach())
        return logs

    # data, loop, validation

    def train_dataset(self) -> FaceDataset:
        d = self.cfg.data
        return FaceDataset(d.train, self.cfg.network_g.out_size, self.cfg.degradation, seed=self.cfg.run.seed,
                           use_hflip=d.use_hflip, landmarks=d.landmarks, cache=d.cache,
                           degrade_in_loader=d.degrade_on == "loader")

    def train_loader(self, stop: int, dataset: FaceDataset | None = None) -> DataLoader:
        """Batches for iterations self.iteration .. stop-1 (0-based), independent of how the run was split."""
        dataset = dataset or self.train_dataset()
        sampler = IterationBatchSampler(len(dataset), self.cfg.run.batch_size, self.cfg.run.seed, self.iteration, stop)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self.cfg.data.num_workers,
                          collate_fn=collate_samples, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator())

    def fit(self, stop: int | None = None, dataset: FaceDataset | None = None) -> None:
        """Train until iteration `stop` (default total_iter), validating and saving on the configured cadence."""
        run = self.cfg.run
        stop = min(stop or run.total_iter, run.total_iter)
        out_dir = Path(run.out_dir)
        from tqdm import tqdm

        progress = tqdm(total=stop, initial=self.iteration, desc="train", unit="it", disable=stop - self.iteration < 2)
        with _stop_requests() as stop_requested:
            for batch in self.train_loader(stop, dataset):
                logs = self.train_step(batch)
                progress.update(1)
                _check_finite(logs, self.iteration, out_dir)
                if self.iteration % run.log_every == 0 or self.iteration == stop:
                    self._log(logs)
                if run.val_every and self.iteration % run.val_every == 0 and self.cfg.data.val_gt:
                    self._validate_and_keep_best(out_dir)
                if run.save_every and (self.iteration % run.save_every == 0 or self.iteration == stop):
                    self.save(out_dir / f"net_g_{self.iteration}.pth")
                    self.save(out_dir / "latest.pth")
                if stop_requested.is_set():
                    log.warning("stopped at iteration %d; resume with --resume %s", self.iteration,
                                out_dir / "latest.pth")
                    self.save(out_dir / "latest.pth")
                    break
        progress.close()

    def _log(self, logs: dict[str, float]) -> None:
        group = self.optimizers["g"].param_groups[0]  # every G group follows the schedule by the same factor
        lr = self.cfg.optim.lr_g * group["lr"] / group["initial_lr"]
        text = " ".join(f"{k}={v:.4g}" for k, v in logs.items())
        log.info("iter %d lr %.3g %s", self.iteration, lr, text)
        writer = self._tensorboard()
        if writer is not None:
            for key, value in logs.items():
                writer.add_scalar(f"train/{key}", value, self.iteration)

    def _tensorboard(self) -> Any:
        """The SummaryWriter, when enabled and the tensorboard package is installed."""
        if self._writer is None and self.cfg.run.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning("tensorboard is not installed: logging to the console only")
                self.cfg.run.tensorboard = False
                return None
            self._writer = SummaryWriter(str(Path(self.cfg.run.out_dir) / "tb"))
        return self._writer

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean PSNR (dB) against the ground truth of the EMA generator's outputs and of the degraded inputs."""
        d = self.cfg.data
        pairs = PairedFaces(d.val_gt, self.cfg.network_g.out_size, d.val_lq, d.val_seed, self.cfg.degradation)
        count = min(len(pairs), d.val_limit) if d.val_limit else len(pairs)
        scores, input_scores = [], []
        for index in range(count):
            sample = pairs[index]
            with self._autocast():
                out, _ = self.net_g_ema(sample["lq"].unsqueeze(0).to(self.device), return_rgb=False, randomize_noise=False)
            gt01 = _to_hwc01(sample["gt"])
            scores.append(psnr(_to_hwc01(out[0]), gt01))
            input_scores.append(psnr(_to_hwc01(sample["lq"]), gt01))
        return {"psnr": float(np.mean(scores)), "psnr_input": float(np.mean(input_scores))}

    def _validate_and_keep_best(self, out_dir: Path) -> None:
        metrics = self.validate()
        log.info("iter %d validation psnr %.3f dB (degraded inputs %.3f dB)", self.iteration, metrics["psnr"],
                 metrics["psnr_input"])
        writer = self._tensorboard()
        if writer is not None:
            for key, value in metrics.items():
                writer.add_scalar(f"val/{key}", value, self.iteration)
        if metrics["psnr"] > self.best_metric:
            self.best_metric = metrics["psnr"]
            self.save(out_dir / "best.pth")

    # checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly; `params_ema` is what inference loads."""
        return {
            "format": CHECKPOINT_FORMAT,
            "iteration": self.iteration,
            "best_metric": self.best_metric,
            "params": self.net_g.state_dict(),
            "params_ema": self.net_g_ema.state_dict(),
            "net_d": self.net_d.state_dict(),
            "net_d_components": self.net_d_components.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: sch.state_dict() for name, sch in self.schedulers.items()},
            "rng": rng_states(),
            "config": self.cfg.to_dict(),
        }

    def save(self, path: str | Path) -> Path:
        """Write a resumable checkpoint atomically."""
        path = Path(path)
        save_atomically(self.state_dict(), path)
        log.info("saved checkpoint %s (iteration %d)", path, self.iteration)
        return path

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint written by save(): weights, EMA, optimisers, schedulers, RNG, iteration."""
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or foreign files fail in many ways; all mean "cannot resume"
            raise VidrestoreError(f"cannot resume from {path}: {error_line(exc)}") from None
        if not isinstance(state, dict) or "format" not in state:
            raise VidrestoreError(f"{path} is not a vidrestore training checkpoint")
        if state["format"] != CHECKPOINT_FORMAT:
            raise VidrestoreError(f"{path} is a training checkpoint of format {state['format']}, this version resumes "
                                  f"format {CHECKPOINT_FORMAT}; start G from it with network_g.pretrained instead")
        self.net_g.load_state_dict(state["params"])
        self.net_g_ema.load_state_dict(state["params_ema"])
        self.net_d.load_state_dict(state["net_d"])
        self.net_d_components.load_state_dict(state["net_d_components"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sch in self.schedulers.items():
            sch.load_state_dict(state["schedulers"][name])
        self.iteration = int(state["iteration"])
        self.best_metric = float(state["best_metric"])
        set_rng_states(state["rng"])
        log.info("resumed from %s at iteration %d", path, self.iteration)


def train_from_config(config_path: str | Path, resume: str | Path | None = None,
                      iterations: int | None = None, out_dir: str | None = None) -> Trainer:
    """`vidrestore train`: build a Trainer from YAML, optionally resume, and run it."""
    cfg = TrainConfig.from_yaml(config_path)
    if out_dir:
        cfg.run.out_dir = out_dir
    if not cfg.data.train:
        raise VidrestoreError(f"{config_path}: data.train is empty; set it to a folder of aligned faces or a list file")
    trainer = Trainer(cfg)
    if resume:
        trainer.load(resume)
    stop = trainer.iteration + iterations if iterations else None
    trainer.fit(stop)
    return trainer
