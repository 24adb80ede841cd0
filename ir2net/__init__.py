"""IR²Net: Information Restriction and Information Recovery for accurate binary
neural networks (Xue et al.) -- a faithful, tested reimplementation.

Where each part of the paper lives:

=====================  ============================================
Eq. 2-4 binarization   :mod:`ir2net.binarize`
Eq. 5-10, Algorithm 1  :mod:`ir2net.restriction` (IRes rules), :mod:`ir2net.steps` (the loss)
Eq. 11-16              :mod:`ir2net.recovery` (IRec / CIRec), :mod:`ir2net.recovery_presets`
Eq. 17-18, Table VI    :mod:`ir2net.complexity`
backbones              :mod:`ir2net.models`
data pipelines         :mod:`ir2net.data`
training recipes       :mod:`ir2net.training`, ``ir2net/recipes/*.yaml``
resumable runs         :mod:`ir2net.runstate`, :mod:`ir2net.longruns`
data parallelism       :mod:`ir2net.distributed`
the paper's runs       :mod:`ir2net.experiments`, :mod:`ir2net.plan`
tables, figures        :mod:`ir2net.reporting`
configuration          :mod:`ir2net.config`, ``ir2net/config_schema.yaml``
=====================  ============================================
"""
__version__ = "0.1.0"
