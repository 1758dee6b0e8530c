import sys
from pathlib import Path

# Make the generated-media helpers importable as `media_factory` from every test module.
sys.path.insert(0, str(Path(__file__).parent))
