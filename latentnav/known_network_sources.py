# Made by tests/latentnav/make_known_sources.py from NVIDIA's public repositories; do not edit.
"""Normalised-source sha256 (:func:`latentnav.nvidia_pickle.normalised_source_sha256`) of every published
revision of NVIDIA's network modules -> the version, the file and the commits that have that tree."""

KNOWN_SOURCES = {
    'dfdc3655a0fb2910494e40a871dc9ceb35096d1789f7db0e3cdeeae4586c667d': {
        "version": 'stylegan2-ada', "repo": 'NVlabs/stylegan2-ada-pytorch', "path": 'training/networks.py',
        "commits": ['375a436003d13acc8a3d287340fdc7877e252e93'],
    },
    'e35afeed6d559b5237f0d2e426fc1773884dfc4c14fae0dc55f83f6cae1f927a': {
        "version": 'stylegan3-stylegan2', "repo": 'NVlabs/stylegan3', "path": 'training/networks_stylegan2.py',
        "commits": ['8fb5177d77556d19bf3ccfa03621aa4cbdf29dc9', '583f2bdd139e014716fc279f23d362959bcc0f39'],
    },
    '9a17a3c0f3204d8d11530bb79a1aaaa19195281c7b3f3412e6877962c6cf2ed3': {
        "version": 'stylegan3', "repo": 'NVlabs/stylegan3', "path": 'training/networks_stylegan3.py',
        "commits": ['8fb5177d77556d19bf3ccfa03621aa4cbdf29dc9', '583f2bdd139e014716fc279f23d362959bcc0f39'],
    },
}
