"""autodistill: AutoDistill (Google, 2022) as a JAX/Flax library."""

import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent

# Bounds verified on Python 3.11 with jax/jaxlib 0.10.2 (CPU), 2026-11. google-vizier (not -dev)
# pins an equinox that fails to import with jax 0.10, see README "Dependencies".
INSTALL_REQUIRES = [
    "jax>=0.10.2,<0.13",
    "jaxlib>=0.10.2,<0.13",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "ml-collections>=1.1,<2",
    "google-vizier-dev[jax]>=0.1.24.dev20261020102113,<0.2",
    "tokenizers>=0.23,<0.24",
    "safetensors>=0.8,<0.9",
    "numpy>=2.0,<3",
    "absl-py>=2.1,<3",
    "tqdm>=4.66,<5",
    "tensorboardX>=2.6,<3",  # TensorBoard event files without TensorFlow
    "matplotlib>=3.8,<4",  # the search's Pareto plot (Agg backend, no display needed)
]

EXTRAS_REQUIRE = {
    # Parity tests and peer benchmarks only; torch 2.13.0 (CPU) is on disk on our machines.
    "test": [
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",  # make test runs the one-device tests in 2 worker processes
        "chex>=0.1.90,<0.2",
        "torch==2.13.0",
        "transformers>=5.20,<6",
        "scikit-learn>=1.5,<2",  # reference implementations for the metric tests
        "scipy>=1.11,<2",
    ],
    # TFDS corpora read through as_data_source need no TensorFlow (array_record datasets).
    "tfds": ["tensorflow-datasets>=4.9.10,<5"],
    "notebook": ["nbclient>=0.10,<1", "ipykernel>=6,<8"],
}

setuptools.setup(
    name="autodistill",
    version="0.1.0",
    description="AutoDistill: hardware-efficient BERT students by Vizier search and flash distillation",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["autodistill", "autodistill.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["autodistill=autodistill.main:run"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
