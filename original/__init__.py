"""The 2012 release as an archival object.

manifest   the 246 files of the release (path, size, blob SHA-1, SHA-256, mode)
verify     check a user's copy against the manifest and the release's git tree id
cfgfile    the Python 2 ConfigParser rules the release's driver read its cfg files with
values     typed reads of cfg values (Python 2 int/float/bool/list conversions)
layers     the release's validation and shape rules for layer-definition files
params     the rules for layer-parameter files
profiles   which input sizes the release used for a given network
notes      what the closing ``#`` notes of a parameter file record
catalog    every cfg file under a folder, with verdicts, shapes and counts
shownet    the layer table of ``alexnet-replay show-net``
"""
