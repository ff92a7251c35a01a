import re

_TAG = re.compile(r"<(\w+):([^>]+)>")


def parse_prompts(prompts):
    data = []
    cleaned = []
    for prompt in prompts:
        data.extend(_TAG.findall(prompt))
        cleaned.append(_TAG.sub("", prompt))
    return cleaned, data
