"""The "camera" of each offline task: blur, sensor noise, illumination, colour cast, framing.

Real benchmark datasets differ less in their content than in how their images were acquired (MNIST: centred white
strokes on black; SVHN: colour street photos of house plates; GTSRB: low-resolution crops of signs outdoors; EuroSAT:
top-down multispectral tiles; DTD: close-ups of surfaces under varied light). These functions give every task of the
offline suite its own such acquisition, so that a model's features can tell which dataset an image comes from, as they
can for the papers' eight datasets, while the content (a digit, a texture) stays confusable across tasks.
"""

from __future__ import annotations

import numpy as np


def _gaussian_filter(image: np.ndarray, sigma: float | tuple[float, ...]) -> np.ndarray:
    """SciPy's Gaussian filter, imported on first use: every stage imports the suites, few of them draw images."""
    from scipy.ndimage import gaussian_filter

    return np.asarray(gaussian_filter(image, sigma))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an (H, W) or (H, W, 3) float image in [0, 1] (optics / resampling softness)."""
    if sigma <= 0:
        return image
    if image.ndim == 2:
        return _gaussian_filter(image, sigma)
    return _gaussian_filter(image, (sigma, sigma, 0))


def gradient(size: int, top: np.ndarray, bottom: np.ndarray, angle: float = 0.0) -> np.ndarray:
    """A linear colour ramp (size, size, 3) from ``top`` to ``bottom``, tilted by ``angle`` radians."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    t = np.clip((yy - 0.5) * np.cos(angle) + (xx - 0.5) * np.sin(angle) + 0.5, 0.0, 1.0)[..., None]
    return top * (1.0 - t) + bottom * t


def illumination(size: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A smooth multiplicative light field (size, size, 1) around 1: one side brighter than the other."""
    angle = rng.uniform(0, 2 * np.pi)
    ramp = gradient(size, np.array([1.0 + strength]), np.array([1.0 - strength]), angle)
    return ramp.astype(np.float32)


def vignette(size: int, strength: float) -> np.ndarray:
    """A lens's radial fall-off (size, size, 1): 1 at the centre, ``1 - strength`` in the corners."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = (size - 1) / 2
    radius2 = ((xx - centre) ** 2 + (yy - centre) ** 2) / (2 * (size / 2) ** 2)
    return (1.0 - strength * radius2)[..., None].astype(np.float32)


def smooth_noise(size: int, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Band-limited noise (size, size) with unit standard deviation (clouds, grain, paper fibres)."""
    field = _gaussian_filter(rng.normal(size=(size, size)), sigma)
    return (field / (field.std() + 1e-6)).astype(np.float32)


def to_uint8(image: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Add white sensor noise to a float image in [0, 1] and quantise to uint8 (H, W, 3)."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if noise > 0:
        image = image + rng.normal(0.0, noise, image.shape)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colorize(alpha: np.ndarray, ink: np.ndarray, ground: np.ndarray) -> np.ndarray:
    """Paint an (H, W) alpha mask with ``ink`` over ``ground`` (a colour or an (H, W, 3) image)."""
    base = ground if ground.ndim == 3 else np.broadcast_to(ground, alpha.shape + (3,))
    return base * (1.0 - alpha[..., None]) + ink * alpha[..., None]
