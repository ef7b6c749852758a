"""A generative adversarial network (GAN) on scikit-learn's 8 x 8 digits, and ways to judge what it draws.

Introduced in chapter 11, section 2 (two ways to generate), beside chapter 7's tiny GPT. A GAN (Goodfellow et al.
2014, *Generative Adversarial Nets*, arXiv:1406.2661) trains two networks against each other: a **generator**
``G`` turns random noise ``z`` into an image, and a **discriminator** ``D`` outputs one logit ``l = D(x)`` whose
sigmoid is its probability that ``x`` is a real training image. With ``sigma`` the logistic sigmoid:

- :func:`discriminator_loss`: ``-mean log sigma(D(x)) - mean log(1 - sigma(D(G(z))))``, the cross-entropy of
  "real" against "fake";
- :func:`generator_loss`: ``kind="minimax"`` is the game's own ``mean log(1 - sigma(D(G(z))))``, which ``G``
  minimises; ``kind="non_saturating"`` is the paper's practical replacement ``-mean log sigma(D(G(z)))``: the
  same fixed point, but a large gradient when ``D`` rejects the fakes easily, as it does early in training
  (:func:`generator_gradient_norm` measures both).

Both losses are written on logits with :func:`log_sigmoid` (``log sigma(l) = -log(1 + e^-l)``, computed without
overflow), as ``F.binary_cross_entropy_with_logits`` does; the tests compare them with it in float64.

:func:`train_gan` alternates one discriminator step and one generator step per mini-batch; the optimisers, the
update, the seeding, the device and the thread count come from :mod:`lmbook.loop`, :mod:`lmbook.seeding` and
:mod:`lmbook.device`, as in every loop of the book. Its defaults take Radford, Metz and Chintala's advice for
stable GAN training (DCGAN, arXiv:1511.06434): Adam with ``beta_1 = 0.5`` (DCGAN's learning rate is 2e-4; the
CPU preset takes twice that, to train in 1,000 steps), leaky ReLUs (slope 0.2) in the discriminator and batch
normalisation in the generator. The networks are small MLPs:
8 x 8 images need no convolutions.

A GAN has no likelihood to report, so its samples are judged by other means (:func:`sample_quality`): a digit
classifier's confidence and the **classifier score** ``exp(E_x KL(p(y|x) || p(y)))``, the Inception Score of
Salimans et al. 2016 (arXiv:1606.03498) with a digits classifier in place of Inception; the histogram of the
classes it predicts (a GAN that draws only a few digits has *collapsed*); and each sample's distance to its
nearest training image (a GAN that copies its training images has *memorised*).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lmbook.device import training_device
from lmbook.loop import cpu_threads, evaluation_mode, make_optimizer, optimizer_step
from lmbook.seeding import private_seed
from lmbook.testing import check_choice, check_shape

GENERATOR_LOSSES = ("non_saturating", "minimax")
IMAGE_SIZE = 8  # scikit-learn's digits are 8 x 8


# ----- the losses, from scratch on logits ------------------------------------------------------------------------


def log_sigmoid(logits: torch.Tensor) -> torch.Tensor:
    """``log sigma(l) = -log(1 + exp(-l))`` elementwise, without overflow for large ``|l|``.

    Written ``min(l, 0) - log(1 + exp(-|l|))``: the exponent is never positive, so ``exp`` cannot overflow, and
    for a very negative ``l`` the result is about ``l`` instead of ``log(0) = -inf``. ``log(1 - sigma(l))`` is
    ``log_sigmoid(-l)``, since ``1 - sigma(l) = sigma(-l)``.
    """
    return torch.clamp(logits, max=0.0) - torch.log1p(torch.exp(-logits.abs()))


def _check_logits(logits: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of discriminator logits, got {type(logits).__name__}")
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]  # (B, 1) -> (B,): one logit per image
    check_shape(logits, ("B",), f"{name} (B,) or (B, 1)")
    if logits.shape[0] == 0:
        raise ValueError(f"{name} is empty: expected at least one logit")
    return logits


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss: ``-mean log sigma(real) - mean log(1 - sigma(fake))``, a scalar.

    The binary cross-entropy of label 1 on the real images plus label 0 on the generated ones, each averaged
    over its own batch (Goodfellow et al. 2014, equation 1, with the sign turned so that ``D`` minimises it).

    Args:
        real_logits: ``D``'s logits on real images, ``(B,)`` or ``(B, 1)``.
        fake_logits: ``D``'s logits on generated images, ``(B',)`` or ``(B', 1)``.
    """
    real_logits = _check_logits(real_logits, "real_logits")
    fake_logits = _check_logits(fake_logits, "fake_logits")
    return -log_sigmoid(real_logits).mean() - log_sigmoid(-fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """The generator's loss on ``D``'s logits for generated images ``(B,)`` or ``(B, 1)``, a scalar.

    Args:
        kind: ``"minimax"``: ``mean log(1 - sigma(l))``, the game's value that ``G`` minimises. Its derivative
            with respect to a logit is ``-sigma(l) / B``, near zero when ``D`` confidently rejects a fake
            (``sigma(l)`` near 0): the loss *saturates* exactly when ``G`` is worst.
            ``"non_saturating"``: ``-mean log sigma(l)``, "maximise the chance that ``D`` is fooled", whose
            derivative ``-(1 - sigma(l)) / B`` is largest there. Both push ``l`` up.
    """
    check_choice(kind, GENERATOR_LOSSES, "generator loss")
    fake_logits = _check_logits(fake_logits, "fake_logits")
    if kind == "minimax":
        return log_sigmoid(-fake_logits).mean()
    return -log_sigmoid(fake_logits).mean()


# ----- the two networks ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GANConfig:
    """Sizes and training settings of the digits GAN.

    Attributes:
        d_noise: length of the noise vector ``z ~ N(0, I)``.
        d_hidden: width of the hidden layers of both networks (the generator's first layer has half of it).
        steps: training steps; each is one discriminator and one generator update on a mini-batch.
        batch_size: real images per step (and as many generated ones).
        lr, betas: Adam's settings for both networks (DCGAN's ``betas``; its learning rate was 2e-4).
        generator_loss: ``"non_saturating"`` or ``"minimax"`` (:func:`generator_loss`).
        log_every: record the losses and ``D``'s mean probabilities every this many steps.
        seed: initial weights, noise and mini-batch order. threads: CPU threads (None: torch's choice).
    """

    d_noise: int = 32
    d_hidden: int = 128
    steps: int = 1000
    batch_size: int = 64
    lr: float = 4e-4
    betas: tuple[float, float] = (0.5, 0.999)
    generator_loss: str = "non_saturating"
    log_every: int = 50
    seed: int = 0
    threads: int | None = 1

    def __post_init__(self) -> None:
        for name in ("d_noise", "d_hidden", "steps", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        check_choice(self.generator_loss, GENERATOR_LOSSES, "generator loss")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1 (or None), got {self.threads}")

    @classmethod
    def cpu(cls, **changes) -> GANConfig:
        """The book's CPU size: 1,000 steps of 64 images, hidden width 128, learning rate 4e-4: about five seconds on
        one thread."""
        return cls(**changes)

    @classmethod
    def gpu(cls, **changes) -> GANConfig:
        """A longer run with wider networks for a GPU: 10,000 steps, hidden width 512, DCGAN's rate 2e-4."""
        return cls(**{"d_hidden": 512, "steps": 10000, "lr": 2e-4, "threads": None, **changes})


def make_generator(d_noise: int = 32, d_hidden: int = 128, seed: int = 0) -> nn.Sequential:
    """``G``: noise ``(B, d_noise)`` -> images ``(B, 1, 8, 8)`` in ``(0, 1)``, an MLP with seeded weights.

    Linear ``d_noise -> d_hidden / 2 -> d_hidden -> 64``, each hidden layer followed by batch normalisation and a
    ReLU, and a sigmoid at the end (the digits' pixels lie in ``[0, 1]``), reshaped to one 8 x 8 channel. Batch
    normalisation in the generator is DCGAN's advice (Radford et al. 2016); without it this generator collapsed
    onto one or two digits in the book's trials. In evaluation mode it uses its running statistics, so a sample
    does not depend on the others drawn with it.
    """
    if d_noise < 1 or d_hidden < 2:
        raise ValueError(f"d_noise must be >= 1 and d_hidden >= 2, got {d_noise} and {d_hidden}")
    with private_seed(seed):
        return nn.Sequential(
            nn.Linear(d_noise, d_hidden // 2),
            nn.BatchNorm1d(d_hidden // 2),
            nn.ReLU(),
            nn.Linear(d_hidden // 2, d_hidden),
            nn.BatchNorm1d(d_hidden),
            nn.ReLU(),
            nn.Linear(d_hidden, IMAGE_SIZE * IMAGE_SIZE),
            nn.Sigmoid(),
            nn.Unflatten(1, (1, IMAGE_SIZE, IMAGE_SIZE)),  # (B, 64) -> (B, 1, 8, 8)
        )


def make_discriminator(d_hidden: int = 128, seed: int = 0) -> nn.Sequential:
    """``D``: images ``(B, 1, 8, 8)`` -> one logit each, ``(B, 1)``; an MLP with leaky ReLUs and seeded weights.

    Linear ``64 -> d_hidden -> d_hidden / 2 -> 1``. The leaky ReLU (slope 0.2, as in DCGAN) keeps a gradient
    for negative inputs, so the generator receives a signal through every unit.
    """
    if d_hidden < 2:
        raise ValueError(f"d_hidden must be >= 2, got {d_hidden}")
    with private_seed(seed):
        return nn.Sequential(
            nn.Flatten(),  # (B, 1, 8, 8) -> (B, 64)
            nn.Linear(IMAGE_SIZE * IMAGE_SIZE, d_hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(d_hidden, d_hidden // 2),
            nn.LeakyReLU(0.2),
            nn.Linear(d_hidden // 2, 1),
        )


def sample_images(generator: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` images ``(n, 1, 8, 8)`` from ``generator`` for noise drawn with ``seed``, without gradients, on the CPU."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    param = next(generator.parameters())
    d_noise = generator[0].in_features if isinstance(generator, nn.Sequential) else None
    if d_noise is None:
        raise TypeError("sample_images expects the nn.Sequential of make_generator")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d_noise, generator=gen).to(param.device, param.dtype)
    with torch.no_grad(), evaluation_mode(generator):
        return generator(z).cpu()


# ----- training ----------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class GANRun:
    """One run of :func:`train_gan`: the two trained networks and what was recorded every ``log_every`` steps.

    Attributes:
        generator, discriminator: the trained networks (on the CPU, in evaluation mode).
        steps: the step numbers of the records. d_loss, g_loss: the mean losses since the previous record.
        d_real, d_fake: ``D``'s mean probability ``sigma(D(x))`` on the real and generated images of those steps.
        seconds: wall-clock time of the training. config: the settings.
    """

    generator: nn.Sequential
    discriminator: nn.Sequential
    config: GANConfig
    steps: list[int] = field(default_factory=list)
    d_loss: list[float] = field(default_factory=list)
    g_loss: list[float] = field(default_factory=list)
    d_real: list[float] = field(default_factory=list)
    d_fake: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_gan(images, config: GANConfig | None = None, device=None) -> GANRun:
    """Train :func:`make_generator` against :func:`make_discriminator` on ``images``.

    Each step draws a mini-batch of real images and as many noise vectors, then (Goodfellow et al. 2014,
    Algorithm 1, with one discriminator step per generator step):

    1. updates ``D`` on :func:`discriminator_loss` of the real images and the generated ones (detached, so this
       step leaves ``G`` alone);
    2. updates ``G`` on :func:`generator_loss` of ``D``'s logits for the same generated images, ``D`` held fixed
       (its gradients are computed but not applied, and cleared before ``D``'s next step).

    Args:
        images: real training images ``(N, 1, 8, 8)`` in ``[0, 1]`` (numpy or torch).
        config: a :class:`GANConfig` (default ``GANConfig.cpu()``).
        device: where to train (None: the CPU, where freshly built networks live).

    Returns:
        A :class:`GANRun`.
    """
    config = config or GANConfig.cpu()
    real = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    check_shape(real, ("N", 1, IMAGE_SIZE, IMAGE_SIZE), "images (N, 1, 8, 8)")
    if real.min() < 0 or real.max() > 1:
        raise ValueError(f"images must lie in [0, 1], got values from {real.min():.3g} to {real.max():.3g}")
    G = make_generator(config.d_noise, config.d_hidden, seed=config.seed)
    D = make_discriminator(config.d_hidden, seed=config.seed + 1)
    dev = training_device(G, device)
    G.to(dev).train()
    D.to(dev).train()
    real = real.to(dev)
    opt_g = make_optimizer(G, "adam", lr=config.lr, betas=config.betas)
    opt_d = make_optimizer(D, "adam", lr=config.lr, betas=config.betas)
    run = GANRun(G, D, config)
    sums = np.zeros(4)  # d_loss, g_loss, d_real, d_fake since the last record
    start = time.perf_counter()
    with private_seed(config.seed, devices=[dev]), cpu_threads(config.threads):
        for step in range(1, config.steps + 1):
            x = real[torch.randint(len(real), (config.batch_size,), device=dev)]  # (B, 1, 8, 8)
            z = torch.randn(config.batch_size, config.d_noise, device=dev)  # (B, d_noise)
            fake = G(z)  # (B, 1, 8, 8)
            real_logits, fake_logits = D(x), D(fake.detach())  # (B, 1) each
            d_loss = discriminator_loss(real_logits, fake_logits)
            optimizer_step(d_loss, D, opt_d)
            g_logits = D(fake)  # D just changed: G is judged by the updated discriminator
            g_loss = generator_loss(g_logits, config.generator_loss)
            optimizer_step(g_loss, G, opt_g)  # D's .grad from this pass is cleared by D's next step
            with torch.no_grad():
                sums += [
                    d_loss.item(),
                    g_loss.item(),
                    torch.sigmoid(real_logits).mean().item(),
                    torch.sigmoid(fake_logits).mean().item(),
                ]
            if step % config.log_every == 0 or step == config.steps:
                count = step - (run.steps[-1] if run.steps else 0)
                means = sums / count
                run.steps.append(step)
                run.d_loss.append(float(means[0]))
                run.g_loss.append(float(means[1]))
                run.d_real.append(float(means[2]))
                run.d_fake.append(float(means[3]))
                sums[:] = 0
    run.seconds = time.perf_counter() - start
    for net in (G, D):
        net.cpu().eval()
        net.zero_grad(set_to_none=True)
    return run


def generator_gradient_norm(
    generator: nn.Module, discriminator: nn.Module, z: torch.Tensor, kind: str = "non_saturating"
) -> float:
    """The norm of the gradient of :func:`generator_loss` ``kind`` with respect to all of ``generator``'s
    parameters, for noise ``z`` ``(B, d_noise)``; neither network's ``.grad`` is touched."""
    check_choice(kind, GENERATOR_LOSSES, "generator loss")
    params = [p for p in generator.parameters() if p.requires_grad]
    loss = generator_loss(discriminator(generator(z)), kind)
    grads = torch.autograd.grad(loss, params)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


# ----- judging the samples -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleQuality:
    """What :func:`sample_quality` measured on a set of images.

    Attributes:
        n: the number of images.
        confidence: the classifier's mean top probability ``mean_x max_y p(y|x)``.
        score: the classifier score ``exp(E_x KL(p(y|x) || p(y)))``, from 1 (every image looks alike or none is
            recognisable) to the number of classes (each image one sure class, all classes equally often).
        histogram: the share of images the classifier assigns to each class, ``(K,)``, summing to 1.
        nearest_distance: each image's Euclidean distance to its nearest training image, ``(n,)``.
    """

    n: int
    confidence: float
    score: float
    histogram: np.ndarray
    nearest_distance: np.ndarray

    @property
    def classes_seen(self) -> int:
        """The number of classes that at least one image was assigned to."""
        return int((self.histogram > 0).sum())


def nearest_distances(images, reference) -> np.ndarray:
    """Each image's Euclidean distance (over its pixels) to the nearest image of ``reference``, ``(n,)``.

    Args:
        images: ``(n, 1, 8, 8)``. reference: ``(m, 1, 8, 8)``, e.g. the training images.
    """
    a = torch.as_tensor(np.asarray(images), dtype=torch.float64).flatten(1)  # (n, 64)
    b = torch.as_tensor(np.asarray(reference), dtype=torch.float64).flatten(1)  # (m, 64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"images have {a.shape[1]} pixels each but the reference images {b.shape[1]}")
    return torch.cdist(a, b).min(dim=1).values.numpy()


def sample_quality(images, classifier: nn.Module, train_images, num_classes: int = 10) -> SampleQuality:
    """Judge ``images`` ``(n, 1, 8, 8)`` with a digit ``classifier`` (images -> ``(n, num_classes)`` logits)
    and the ``train_images`` ``(m, 1, 8, 8)`` the generator learnt from; see :class:`SampleQuality`."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    check_shape(x, ("n", 1, IMAGE_SIZE, IMAGE_SIZE), "images (n, 1, 8, 8)")
    param = next(classifier.parameters())
    with torch.no_grad(), evaluation_mode(classifier):
        logits = classifier(x.to(param.device, param.dtype)).double().cpu()
    check_shape(logits, (len(x), num_classes), f"classifier logits (n, {num_classes})")
    p = torch.softmax(logits, dim=1)  # p(y | x): (n, K)
    marginal = p.mean(dim=0, keepdim=True)  # p(y): (1, K)
    kl = (p * (torch.log(p.clamp_min(1e-300)) - torch.log(marginal))).sum(dim=1)  # (n,)
    histogram = np.bincount(p.argmax(dim=1).numpy(), minlength=num_classes) / len(x)
    return SampleQuality(
        n=len(x),
        confidence=float(p.max(dim=1).values.mean()),
        score=float(torch.exp(kl.mean())),
        histogram=histogram,
        nearest_distance=nearest_distances(x, train_images),
    )
