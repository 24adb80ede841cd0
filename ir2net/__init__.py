"""IR²Net: Information Restriction and Information Recovery for accurate binary
neural networks (Xue et al.) -- a faithful, tested reimplementation.

Where each part of the paper lives:

=====================  ============================================
Eq. 2-4 binarization   :mod:`ir2net.binarize`
Eq. 5-10, Algorithm 1  :mod:`ir2net.restriction` (IRes)
Eq. 11-16              :mod:`ir2net.recovery` (IRec / CIRec, Tables II, V)
backbones              :mod:`ir2net.models`
data pipelines         :mod:`ir2net.data`
training recipes       :mod:`ir2net.training`, ``ir2net/recipes/*.yaml``
configuration          :mod:`ir2net.config`, ``ir2net/config_schema.yaml``
=====================  ============================================
"""
__version__ = "0.1.0"
