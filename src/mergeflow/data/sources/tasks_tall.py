"""The papers' 20 vision tasks as data: the task arithmetic 8, TALL masks' 14 and 20 (FusionBench's TALL8/14/20).

Each task names the public Hugging Face dataset FusionBench loads (ids, configs, splits and columns as documented in
its configs; they could not be checked against the hub from here) and the zero-shot prompt templates. Templates are
the CLIP paper's per-dataset lists (``openai/CLIP`` ``data/prompts.md``, the lists behind its Table 9), written out
here as facts; four tasks CLIP did not evaluate (SVHN, EMNIST letters, FashionMNIST, KMNIST) carry mergeflow's own
templates in the same style (SVHN reuses CLIP's MNIST prompt), marked ``templates_origin="mergeflow"``.

Class names come from each dataset's ``ClassLabel`` at load time. Explicit lists are written only where we know the
names and their label order as facts, and they serve as the fallback for datasets whose label column is a bare
integer or boolean (and as a count check otherwise):

- ``mnist``, ``svhn``: the digits "0".."9" (SVHN's cropped digits are labelled 0..9, "10" remapped to 0).
- ``cifar10``, ``stl10``, ``fashion_mnist``, ``kmnist``: the datasets' published class orders.
- ``eurosat``: the ten EuroSAT classes in the dataset's alphabetical folder order, written as words.
- ``pcam``: label 0 = no tumour in the centre patch, 1 = metastatic tissue (the hub copy stores a boolean),
  named as CLIP names them.
- ``fer2013``: clip_benchmark's order for its webdataset copy (alphabetical: angry, disgusted, fearful, happy,
  neutral, sad, surprised), which has integer labels only. The Kaggle CSV read by torchvision numbers them
  differently (neutral is 6): a torchvision FER2013 reference takes the allow-list's Kaggle order instead
  (``torchvision_roots.FER2013_KAGGLE_CLASSES``), which wins over this list.
- ``rendered_sst2``: negative, positive.

Relying on the dataset's own names: sun397, stanford_cars, resisc45, gtsrb, dtd, cifar100, oxford_flowers102,
oxford_iiit_pet, emnist_letters, food101. Prompt-friendly renamings (CLIP's curated GTSRB or EuroSAT names) are not
applied: they come in another order than the datasets' labels.

Validation: no task names its dataset's own validation split, as TALL masks carve it from train even where one
exists (Flowers102, PCAM, RenderedSST2); ``food101`` tests on the hub's ``validation`` split, its only held-out one.
"""

from __future__ import annotations

from mergeflow.data.sources.real_task import RealTask
from mergeflow.data.sources.reference import DatasetRef
from mergeflow.errors import MergeflowError

# --- the CLIP paper's templates (data/prompts.md), one tuple per dataset --------------------------------------------
_PHOTO_OF_A_OR_THE = ("a photo of a {}.", "a photo of the {}.")
_CIFAR = (
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.", "a low contrast photo of a {}.",
    "a high contrast photo of a {}.", "a bad photo of a {}.", "a good photo of a {}.", "a photo of a small {}.",
    "a photo of a big {}.", "a photo of the {}.", "a blurry photo of the {}.", "a black and white photo of the {}.",
    "a low contrast photo of the {}.", "a high contrast photo of the {}.", "a bad photo of the {}.",
    "a good photo of the {}.", "a photo of the small {}.", "a photo of the big {}.",
)
_CARS = ("a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "i love my {}!", "a photo of my dirty {}.",
         "a photo of my clean {}.", "a photo of my new {}.", "a photo of my old {}.")
_RESISC45 = tuple(f"{source} {view} of {article}{{}}." for article in ("", "a ", "the ")
                  for view in ("imagery", "photo", "view") for source in ("satellite", "aerial"))
_EUROSAT = ("a centered satellite photo of {}.", "a centered satellite photo of a {}.", "a centered satellite photo of the {}.")
_GTSRB = ('a zoomed in photo of a "{}" traffic sign.', 'a centered photo of a "{}" traffic sign.',
          'a close up photo of a "{}" traffic sign.')
_NUMBER = ('a photo of the number: "{}".',)
_DTD = tuple(f"a photo of {article} {{}} {noun}." for article in ("a", "the") for noun in ("texture", "pattern", "thing", "object"))
_FER2013 = ("a photo of a {} looking face.", "a photo of a face showing the emotion: {}.", "a photo of a face looking {}.",
            "a face that looks {}.", "they look {}.", "look at how {} they are.")

# --- explicit class names (facts; see the module docstring for which tasks rely on the dataset instead) -------------
DIGITS = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
EUROSAT_CLASSES = ("annual crop", "forest", "herbaceous vegetation", "highway", "industrial buildings", "pasture",
                   "permanent crop", "residential buildings", "river", "sea or lake")
PCAM_CLASSES = ("lymph node", "lymph node containing metastatic tumor tissue")
FER2013_WDS_CLASSES = ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")
SST2_CLASSES = ("negative", "positive")


def _hub(hub_id: str, *, config: str | None = None, test_split: str = "test", image_column: str = "image",
         label_column: str = "label") -> DatasetRef:
    return DatasetRef(kind="huggingface", id=hub_id, config=config, test_split=test_split,
                      image_column=image_column, label_column=label_column)


_TASKS = (
    # the task arithmetic eight
    RealTask("sun397", "SUN397", _hub("tanganke/sun397"), _PHOTO_OF_A_OR_THE, "clip_paper", num_classes=397),
    RealTask("stanford_cars", "Cars", _hub("tanganke/stanford_cars"), _CARS, "clip_paper", num_classes=196),
    RealTask("resisc45", "RESISC45", _hub("tanganke/resisc45"), _RESISC45, "clip_paper", num_classes=45),
    RealTask("eurosat", "EuroSAT", _hub("tanganke/eurosat"), _EUROSAT, "clip_paper", EUROSAT_CLASSES, 10),
    RealTask("svhn", "SVHN", _hub("ufldl-stanford/svhn", config="cropped_digits"), _NUMBER, "mergeflow", DIGITS, 10),
    RealTask("gtsrb", "GTSRB", _hub("tanganke/gtsrb"), _GTSRB, "clip_paper", num_classes=43),
    RealTask("mnist", "MNIST", _hub("ylecun/mnist"), _NUMBER, "clip_paper", DIGITS, 10),
    RealTask("dtd", "DTD", _hub("tanganke/dtd"), _DTD, "clip_paper", num_classes=47),
    # TALL masks' six more (14)
    RealTask("cifar100", "CIFAR100", _hub("tanganke/cifar100"), _CIFAR, "clip_paper", num_classes=100),
    RealTask("stl10", "STL10", _hub("tanganke/stl10"), _PHOTO_OF_A_OR_THE, "clip_paper", STL10_CLASSES, 10),
    RealTask("oxford_flowers102", "Flowers102", _hub("dpdl-benchmark/oxford_flowers102"),
             ("a photo of a {}, a type of flower.",), "clip_paper", num_classes=102),
    RealTask("oxford_iiit_pet", "OxfordIIITPet", _hub("timm/oxford-iiit-pet"),
             ("a photo of a {}, a type of pet.",), "clip_paper", num_classes=37),
    RealTask("pcam", "PCAM", _hub("1aurent/PatchCamelyon"), ("this is a photo of {}",), "clip_paper", PCAM_CLASSES, 2),
    RealTask("fer2013", "FER2013", _hub("clip-benchmark/wds_fer2013", image_column="jpg", label_column="cls"),
             _FER2013, "clip_paper", FER2013_WDS_CLASSES, 7),
    # and six more (20)
    RealTask("emnist_letters", "EMNIST", _hub("tanganke/emnist_letters"), ('a photo of the letter: "{}".',), "mergeflow"),
    RealTask("cifar10", "CIFAR10", _hub("tanganke/cifar10"), _CIFAR, "clip_paper", CIFAR10_CLASSES, 10),
    RealTask("food101", "Food101", _hub("ethz/food101", test_split="validation"),
             ("a photo of {}, a type of food.",), "clip_paper", num_classes=101),
    RealTask("fashion_mnist", "FashionMNIST", _hub("zalando-datasets/fashion_mnist"), _PHOTO_OF_A_OR_THE, "mergeflow",
             FASHION_MNIST_CLASSES, 10),
    RealTask("rendered_sst2", "RenderedSST2", _hub("nateraw/rendered-sst2"), ("a {} review of a movie.",), "clip_paper",
             SST2_CLASSES, 2),
    RealTask("kmnist", "KMNIST", _hub("tanganke/kmnist"), ('a photo of the character: "{}".',), "mergeflow", KMNIST_CLASSES, 10),
)

TALL_TASKS: dict[str, RealTask] = {task.name: task for task in _TASKS}

TALL_SUITES: dict[str, tuple[str, ...]] = {
    "tall8": tuple(task.name for task in _TASKS[:8]),
    "tall14": tuple(task.name for task in _TASKS[:14]),
    "tall20": tuple(task.name for task in _TASKS),
}


def tall_suite(name: str) -> dict[str, RealTask]:
    """The tasks of ``tall8`` / ``tall14`` / ``tall20``, in the papers' order."""
    if name not in TALL_SUITES:
        raise MergeflowError(f"unknown real-task suite {name!r}; known: {', '.join(TALL_SUITES)}")
    return {task: TALL_TASKS[task] for task in TALL_SUITES[name]}
