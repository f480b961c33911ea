"""Content digests of the real-survey scenarios' streams, one per seed: the sha256 the stream
file format stores (``simlab.tasks.stream.content_digest``) of ``generate_stream(seed)``,
built without the cache (so no cache key, which holds the code digest, enters it). Equal
digests before and after a change to ``simlab/survey/`` mean byte-identical streams.

    python bench/survey_stream_digests.py [gss_happiness gss_abortion]
"""
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from simlab.experiment.config import load_scenario
from simlab.tasks.stream import save_stream

warnings.simplefilter("ignore")
folder = Path(tempfile.mkdtemp())
for name in sys.argv[1:] or ["gss_happiness", "gss_abortion"]:
    scenario = load_scenario(f"scenarios/{name}.toml")
    for seed in range(int(scenario.evaluation.seeds)):
        path = save_stream(scenario.generate_stream(seed), folder / f"{name}-{seed}.npz")
        with np.load(path) as npz:
            print(name, seed, npz["digest"].tobytes().decode(), flush=True)
