"""Values the data, the model and prediction share; here so that none of them imports another for a number."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the statistics torchvision's ImageNet backbones were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
# An image is unfamiliar when its novelty exceeds what this share of the validation images reach (train/module.py).
UNFAMILIAR_QUANTILE = 0.99
# Crops per network call when judging without autograd: on a CPU a few at a time keep each block's maps in its
# caches (README "Speed": 4 measured fastest, 64 took 2.5x longer); a GPU wants large calls.
CPU_CROP_CHUNK = 4
GPU_CROP_CHUNK = 64
# Images per prediction batch where a call names none. On a CPU their crops go through the net CPU_CROP_CHUNK at a time
# whatever the batch, so a larger batch only holds more decoded crops in memory (README "Memory"); a GPU wants large
# calls.
CPU_PREDICT_BATCH = 8
GPU_PREDICT_BATCH = 32
# Freed memory that prediction keeps for the next batch (detective.memory): fresh pages would be faulted in again
# for every batch's activations; beyond this it is handed back after the batch, so photos of many sizes cannot grow
# the process.
PREDICT_KEPT_MEMORY = 256 * 2**20
# How long an idle OpenMP thread of prediction spins before it sleeps (GNU libgomp's GOMP_SPINCOUNT, set by predict.py
# unless the user set it). libgomp's default spins 300 times longer, which on a small machine takes the cores of the
# decoding threads where decoding is most of the work; spinning far less, the network's threads sleep between its calls.
PREDICT_SPIN_COUNT = 1000
