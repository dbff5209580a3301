"""migtune: understand and tune QEMU/KVM live migration.

The library is organised in layers, data flowing one way:

* :mod:`migtune.sources` - parsers and QMP produce a :class:`migtune.model.Run`;
* :mod:`migtune.analysis` - explain, diagnose, calibrate, simulate, tune read it;
* :mod:`migtune.outputs` and :mod:`migtune.report` - text, JSON, HTML and plots render it.
"""

__version__ = "0.1.0"
