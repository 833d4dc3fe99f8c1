"""The model zoo. Each family registers its models and checkpoint detectors on import (explicit list)."""
from leansr.models import rlfn  # noqa: F401
from leansr.models import imdn  # noqa: F401
from leansr.models import msrresnet  # noqa: F401
from leansr.models import ecbsr  # noqa: F401
from leansr.models import rfdn  # noqa: F401
from leansr.models import pan  # noqa: F401
from leansr.models import imdn_acb  # noqa: F401
from leansr.models import fmen  # noqa: F401
from leansr.models import bicubic  # noqa: F401
from leansr.models import edsr  # noqa: F401
from leansr.models import ghostsr  # noqa: F401
