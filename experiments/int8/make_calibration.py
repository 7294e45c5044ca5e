"""Write int8's calibration texts (src/searchr3/resources/int8_calibration.json) with the base model.

SmoothQuant needs the activation ranges of representative inputs. They must not come from any
evaluation corpus (the bundled sets are measured with int8 afterwards), and the project ships no
other text it may redistribute, so the bundled base model writes them: a short passage for each
topic below, greedy, in three styles (encyclopedic, argumentative, practical) that resemble the
documents of the bundled sets; the topics themselves serve as queries.

    python experiments/int8/make_calibration.py
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from searchr3 import SearchR3
from searchr3.quantization import CALIBRATION_FILE

BASE = "smollm2-135m-instruct"
STYLES = {
    "Write a short encyclopedia paragraph about {}.": [
        "photosynthesis in plants", "the French Revolution", "black holes", "the human immune system",
        "the history of the printing press", "volcanoes", "the Great Barrier Reef", "the stock market",
        "antibiotic resistance", "the Roman road network", "jazz music", "glaciers and climate",
        "the structure of DNA", "the Silk Road", "semiconductor chips", "the Olympic Games",
    ],
    "Write a short argument for or against this claim: {}.": [
        "homework should be banned", "cities should ban cars from their centres", "voting should be compulsory",
        "nuclear power is the best answer to climate change", "zoos should be closed", "school uniforms help students",
        "social media does more harm than good", "space exploration is worth its cost",
        "the minimum wage should be raised", "animals should not be used in medical research",
        "college education should be free", "advertising to children should be banned",
        "remote work is better than office work", "professional athletes are paid too much",
        "tourism harms local communities", "governments should tax sugary drinks",
    ],
    "Write a short practical explanation of {}.": [
        "how to repair a bicycle puncture", "how vaccines are tested in clinical trials",
        "how a bill becomes law", "how to store vegetables so they last", "how a search engine ranks pages",
        "how interest on a loan is calculated", "how to care for a houseplant", "how bridges carry heavy loads",
        "how a patient is diagnosed with diabetes", "how to write a cover letter", "how tides work",
        "how a court appeal works", "how electric cars are charged", "how to train a puppy",
        "how recycling plants sort waste", "how blood pressure is measured",
    ],
}
MAX_NEW_TOKENS = 200
BATCH = 16


def main() -> None:
    model = SearchR3.from_pretrained(BASE, dtype="fp32")
    tok, lm = model.tokenizer, model.model
    tok.padding_side = "left"
    prompts = [(style, topic) for style, topics in STYLES.items() for topic in topics]
    documents = []
    for start in range(0, len(prompts), BATCH):
        chunk = prompts[start:start + BATCH]
        chats = [tok.apply_chat_template([{"role": "user", "content": s.format(t)}], tokenize=False,
                                         add_generation_prompt=True) for s, t in chunk]
        batch = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = lm.generate(**batch, do_sample=False, max_new_tokens=MAX_NEW_TOKENS, repetition_penalty=1.3,
                              pad_token_id=model.pad_token_id)
        for row in out[:, batch["input_ids"].shape[1]:]:
            documents.append(tok.decode(row, skip_special_tokens=True).strip())
        print(f"{len(documents)}/{len(prompts)}", flush=True)
    record = {
        "source": f"written by {BASE} (the bundled base model), greedy, repetition penalty 1.3, "
                  f"{MAX_NEW_TOKENS} new tokens, by experiments/int8/make_calibration.py; "
                  "queries are the prompts' topics. No evaluation corpus was used.",
        "documents": documents,
        "queries": [t for _, t in prompts],
    }
    CALIBRATION_FILE.parent.mkdir(parents=True, exist_ok=True)
    CALIBRATION_FILE.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {CALIBRATION_FILE}: {len(documents)} documents, {len(record['queries'])} queries")


if __name__ == "__main__":
    main()
