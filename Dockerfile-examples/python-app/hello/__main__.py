import json
import os
import sys

from hello import top_words

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "top": top_words(os.path.join(here, "words.txt"))}))
