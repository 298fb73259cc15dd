"""minitl: transfer learning built from scratch in NumPy (CuPy on a GPU)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="minitl",
    version="0.1.0",
    description="Transfer learning from scratch in NumPy: autograd, layers, CV transfer, word2vec/GloVe, CUDA kernels",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # kernels/ and lessons/ sit at the top of the repository, where a reader finds them, and
    # install inside minitl's namespace (minitl.kernels, minitl.lessons): top-level names such
    # as `kernels` belong to other packages on PyPI
    packages=find_packages(include=["minitl", "minitl.*"])
    + ["minitl.kernels", "minitl.kernels.emulation", "minitl.lessons"],
    package_dir={"minitl.kernels": "kernels", "minitl.lessons": "lessons"},
    # the CPU emulation of the CUDA kernels compiles its C++ sources with g++ when first used
    package_data={"minitl": ["exercise_deps.json"], "minitl.kernels": ["*.cu", "*.md"], "minitl.kernels.emulation": ["*.h", "*.cpp"],
                  "minitl.lessons": ["*.py"]},
    install_requires=[
        "numpy>=1.24",
        "matplotlib>=3.6",
        "tqdm>=4.60",
        "jupytext>=1.14",
        "threadpoolctl>=3",  # one BLAS thread where small matrix products dominate (word2vec)
    ],
    extras_require={
        # what the test suite needs; PyTorch is the differential-test oracle (tests skip without it)
        "dev": ["pytest>=7", "hypothesis>=6", "gensim>=4.3"],
        # PyTorch CPU as a test oracle and benchmark peer; this version is a CPU build
        "oracle": ["torch==2.13.0"],
        "gpu": ["cupy-cuda12x"],
        "gensim": ["gensim>=4.3"],
    },
    entry_points={"console_scripts": ["minitl = minitl.cli:main"]},
)
