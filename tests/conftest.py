import os
import sys
import tempfile
from pathlib import Path

# Qt must never look for a display in tests; set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Keep the tests on the CPU and within the 2 cores CI gives us.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# The decoded-image cache goes to a throw-away folder, never the user's ~/.cache.
os.environ.setdefault("RESNET_APP_CACHE_DIR", tempfile.mkdtemp(prefix="resnet-app-test-cache-"))
# No ImageNet weights at hand but the ones a test puts there (the installed app may set this one).
os.environ.pop("RESNET_APP_FALLBACK_WEIGHTS", None)

TESTS_DIR = Path(__file__).parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
