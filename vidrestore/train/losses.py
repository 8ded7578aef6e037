"""Loss functions of GFP-GAN training (specs/gfpgan.md 3.4), as plain functions on tensors.

GAN losses use the non-saturating logistic form (BasicSR's `wgan_softplus`); the component
discriminators use BCE-with-logits. Every loss returns a scalar tensor; weights are applied by the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from vidrestore.train.perceptual import gram_matrix


def generator_gan_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss softplus(-D(G(x)))."""
    return F.softplus(-fake_pred).mean()


def discriminator_gan_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """Logistic D loss softplus(-D(real)) + softplus(D(fake))."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def r1_penalty(real_pred: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the squared gradient norm of D at real images (R1 regulariser)."""
    (grad,) = torch.autograd.grad(real_pred.sum(), real_img, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def lazy_r1_loss(real_pred: torch.Tensor, real_img: torch.Tensor, weight: float, every: int) -> torch.Tensor:
    """Lazy R1 as GFP-GAN applies it every `every` iterations: weight/2 * R1 * every."""
    return weight / 2 * r1_penalty(real_pred, real_img) * every + 0 * real_pred[0].sum()


def component_bce(pred: torch.Tensor, is_real: bool) -> torch.Tensor:
    """BCE-with-logits of a component discriminator's patch map against label 1 (real) or 0 (fake)."""
    target = torch.ones_like(pred) if is_real else torch.zeros_like(pred)
    return F.binary_cross_entropy_with_logits(pred, target)


def gt_pyramid(gt: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[gt at 8, ..., gt at S]: `levels` images, each the next one halved bilinearly."""
    pyramid = [gt]
    for _ in range(levels - 1):
        pyramid.insert(0, F.interpolate(pyramid[0], scale_factor=0.5, mode="bilinear", align_corners=False))
    return pyramid


def pyramid_loss(out_rgbs: list[torch.Tensor], gt: torch.Tensor) -> torch.Tensor:
    """Sum of L1 losses of the U-Net's intermediate RGB outputs against the downsampled GT."""
    return sum(F.l1_loss(rgb.float(), target) for rgb, target in zip(out_rgbs, gt_pyramid(gt, len(out_rgbs))))


def component_rois(boxes: torch.Tensor) -> torch.Tensor:
    """(B, 4) boxes -> (B, 5) roi_align rows [batch index, x1, y1, x2, y2]."""
    index = torch.arange(boxes.shape[0], device=boxes.device, dtype=boxes.dtype).unsqueeze(1)
    return torch.cat([index, boxes], dim=1)


def crop_component(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut one component per image (boxes (B, 4) in pixels) and resample it to size x size."""
    return roi_align(images.float(), component_rois(boxes.float()), output_size=size)


def component_style_loss(feats: list[torch.Tensor], feats_gt: list[torch.Tensor]) -> torch.Tensor:
    """L1 of Gram matrices of component-D features: 0.5 x conv3 + 1 x conv5 (GT features detached)."""
    conv3 = F.l1_loss(gram_matrix(feats[0].float()), gram_matrix(feats_gt[0].detach().float()))
    conv5 = F.l1_loss(gram_matrix(feats[1].float()), gram_matrix(feats_gt[1].detach().float()))
    return conv3 * 0.5 + conv5


def identity_loss(emb_out: torch.Tensor, emb_gt: torch.Tensor) -> torch.Tensor:
    """L1 between ArcFace embeddings of output and (detached) GT."""
    return F.l1_loss(emb_out.float(), emb_gt.detach().float())
