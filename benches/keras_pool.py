#!/usr/bin/env python3
"""The original's Keras CNN predicting a whole pool file, chunk by chunk as mljm reads it.

usage: keras_pool.py POOL.h5 [BATCH=1024]
Prints one line: `keras: N spectra in S s (R spectra/s)`. The weights are random (prediction
costs the same whatever they are); the architecture is the original's (see tf_cnn_bench.py
in the reference pipelines). `mljm bench-al --keras-python PY` runs this beside its own
iteration, on the same pool."""
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import h5py
import numpy as np
from tensorflow import keras
from tensorflow.keras import layers

path = sys.argv[1]
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
with h5py.File(path, "r") as f:
    fluxes = f["fluxes"]
    n, p = fluxes.shape
    m = keras.Sequential([keras.Input((p, 1)),
        layers.Conv1D(64, 3, activation="relu"), layers.Conv1D(64, 3, activation="relu"), layers.MaxPooling1D(2),
        layers.Conv1D(128, 3, activation="relu"), layers.Conv1D(128, 3, activation="relu"), layers.MaxPooling1D(2),
        layers.Conv1D(256, 3, activation="relu"), layers.Conv1D(256, 3, activation="relu"), layers.MaxPooling1D(2),
        layers.Flatten(), layers.Dense(512, activation="relu"), layers.Dropout(0.5),
        layers.Dense(512, activation="relu"), layers.Dropout(0.5), layers.Dense(3, activation="softmax")])
    m.predict(np.zeros((batch, p, 1), np.float32), verbose=0)
    t = time.time()
    step = max(batch, 65536)
    for start in range(0, n, step):
        x = fluxes[start:start + step].astype(np.float32)[..., None]
        probs = m.predict(x, batch_size=batch, verbose=0)
        labels = probs.argmax(1)
        entropies = -(probs * np.log(np.clip(probs, 1e-30, 1))).sum(1)
    s = time.time() - t
print(f"keras: {n} spectra in {s:.2f} s ({n / s:.0f} spectra/s)")
