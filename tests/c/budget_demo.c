/* Drives an s1kit budget-forcing batch from C, as a C or C++ inference engine would.
 *
 * Two rows share one decode loop. Token ids of a toy vocabulary of 32: 1 = "<think>",
 * 2 = "</think>", 3 4 = "Wait ,", 9 = EOS, 5 = "Final", 6 = "Answer:"; the rest is ordinary text.
 * Row 0 (override mode) is capped after 6 thinking tokens and must get "</think> Final Answer:";
 * row 1 tries to end thinking at once and must get "Wait ," twice before its end is accepted.
 * Then a mask-mode step (the llama.cpp sampler mapping: apply = mask, accept = advance) checks
 * that the end of thinking is banned and redirected onto "Wait".
 * Prints one line per check and "budget_demo: OK" at the end; exits non-zero on any mismatch.
 */
#include <stdio.h>
#include <string.h>

#include "s1kit.h"

static int failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
        } else {                                                                                   \
            printf("ok   ");                                                                       \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
    } while (0)

#define TRY(call)                                                                                  \
    do {                                                                                           \
        S1kitStatus st_ = (call);                                                                  \
        if (st_ != S1KIT_STATUS_OK) {                                                              \
            printf("FAIL %s -> status %d: %s\n", #call, (int)st_, s1kit_last_error());            \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static const uint32_t THINK_START[] = {1}, THINK_END[] = {2}, WAIT[] = {3, 4}, EOS[] = {9};
static const uint32_t ANSWER_PREFIX[] = {2, 5, 6};
static const uint32_t ONE[] = {1}, TWO[] = {2};

static S1kitSpecDesc spec_desc(int64_t max_thinking, uint32_t num_extensions) {
    S1kitSpecDesc d;
    memset(&d, 0, sizeof d);
    d.vocab_size = 32;
    d.think_start = (S1kitSeqs){THINK_START, ONE, 1};
    d.think_end = (S1kitSeqs){THINK_END, ONE, 1};
    d.eos = EOS;
    d.eos_len = 1;
    d.answer_prefix = ANSWER_PREFIX;
    d.answer_prefix_len = 3;
    d.extensions = (S1kitSeqs){WAIT, TWO, 1};
    d.max_thinking_tokens = max_thinking;
    d.num_extensions = num_extensions;
    d.max_answer_tokens = -1; /* no answer cap */
    return d;
}

int main(void) {
    printf("s1kit %s\n", s1kit_version());

    /* A bad spec is refused with a status and a message, never a crash. */
    S1kitSpecDesc bad = spec_desc(6, 0);
    bad.answer_prefix_len = 0;
    S1kitSpec *spec_bad = NULL;
    S1kitStatus st = s1kit_spec_new(&bad, &spec_bad);
    CHECK(st == S1KIT_STATUS_INVALID_SPEC && strstr(s1kit_last_error(), "answer_prefix") != NULL,
          "invalid spec refused: %s", s1kit_last_error());

    S1kitSpecDesc d0 = spec_desc(6, 0), d1 = spec_desc(-1, 2);
    S1kitSpec *cap = NULL, *extend = NULL;
    TRY(s1kit_spec_new(&d0, &cap));
    TRY(s1kit_spec_new(&d1, &extend));

    S1kitBatch *batch = NULL;
    TRY(s1kit_batch_new(2, 8, &batch));
    TRY(s1kit_batch_insert(batch, 0, cap));
    TRY(s1kit_batch_insert(batch, 1, extend));
    s1kit_spec_free(cap); /* rows keep their own reference */
    s1kit_spec_free(extend);
    const uint32_t prompt[] = {7, 8, 1}; /* the template opens thinking */
    TRY(s1kit_batch_process_prompt(batch, 0, prompt, 3));
    TRY(s1kit_batch_process_prompt(batch, 1, prompt, 3));

    /* The "model": row 0 thinks forever with token 10, then answers 11 and EOS; row 1 always
     * tries to close thinking (2) and then answers 12 and EOS. */
    int64_t out0[32], out1[32];
    int n0 = 0, n1 = 0;
    int done0 = 0, done1 = 0;
    for (int step = 0; step < 20; step++) {
        int64_t sampled[2];
        sampled[0] = n0 >= 9 ? (n0 >= 10 ? 9 : 11) : 10;
        sampled[1] = (n1 > 0 && out1[n1 - 1] == 2) ? 12 : (n1 > 0 && out1[n1 - 1] == 12 ? 9 : 2);
        int32_t out[2];
        TRY(s1kit_batch_step(batch, sampled, NULL, 2, out));
        if (!done0) out0[n0++] = out[0] >= 0 ? out[0] : sampled[0];
        if (!done1) out1[n1++] = out[1] >= 0 ? out[1] : sampled[1];
        S1kitRowState s0, s1;
        TRY(s1kit_batch_row_state(batch, 0, &s0));
        TRY(s1kit_batch_row_state(batch, 1, &s1));
        done0 = s0.phase == S1KIT_PHASE_DONE;
        done1 = s1.phase == S1KIT_PHASE_DONE;
        if (done0 && done1) break;
    }

    const int64_t want0[] = {10, 10, 10, 10, 10, 10, 2, 5, 6, 11, 9};
    const int64_t want1[] = {3, 4, 3, 4, 2, 12, 9};
    printf("row 0:");
    for (int i = 0; i < n0; i++) printf(" %lld", (long long)out0[i]);
    printf("\nrow 1:");
    for (int i = 0; i < n1; i++) printf(" %lld", (long long)out1[i]);
    printf("\n");
    CHECK(n0 == 11 && memcmp(out0, want0, sizeof want0) == 0,
          "row 0 capped at 6 thinking tokens, then \"</think> Final Answer:\"");
    CHECK(n1 == 7 && memcmp(out1, want1, sizeof want1) == 0,
          "row 1 got \"Wait ,\" twice, then its end was accepted");

    S1kitRowState s0, s1;
    TRY(s1kit_batch_row_state(batch, 0, &s0));
    TRY(s1kit_batch_row_state(batch, 1, &s1));
    CHECK(s0.capped && s0.thinking_tokens == 6 && s0.answer_tokens == 5 && s0.forced_tokens == 3,
          "row 0 accounting: capped=%d thinking=%u answer=%u forced=%u", s0.capped,
          s0.thinking_tokens, s0.answer_tokens, s0.forced_tokens);
    CHECK(!s1.capped && s1.extensions_used == 2 && s1.thinking_tokens == 5 && s1.forced_tokens == 4,
          "row 1 accounting: extensions=%u thinking=%u forced=%u", s1.extensions_used,
          s1.thinking_tokens, s1.forced_tokens);

    /* Mask mode on a fresh row in slot 1 (a llama_sampler's apply/accept); insert needs an empty slot. */
    S1kitSpec *again = NULL;
    TRY(s1kit_spec_new(&d1, &again));
    TRY(s1kit_batch_remove(batch, 1));
    TRY(s1kit_batch_insert(batch, 1, again));
    s1kit_spec_free(again);
    TRY(s1kit_batch_process_prompt(batch, 1, prompt, 3));
    size_t width = 0;
    TRY(s1kit_batch_ban_width(batch, &width));
    const uint32_t rows[] = {1};
    int32_t force[1], redirect[1], ban[8];
    CHECK(width <= 8, "ban width %zu", width);
    TRY(s1kit_batch_mask(batch, rows, 1, force, redirect, ban, width));
    int bans_end = 0, bans_eos = 0;
    for (size_t k = 0; k < width; k++) {
        bans_end |= ban[k] == 2;
        bans_eos |= ban[k] == 9;
    }
    CHECK(force[0] == -1 && redirect[0] == 3 && bans_end && bans_eos,
          "mask: no force, \"</think>\" and EOS banned, \"Wait\" replaces them");
    /* "</think>" (banned) outranked "Wait", which got its probability: the emission stands for it. */
    const int64_t emitted[] = {3};
    const uint8_t stands_for_end[] = {1};
    TRY(s1kit_batch_advance(batch, emitted, stands_for_end, rows, 1));
    TRY(s1kit_batch_mask(batch, rows, 1, force, redirect, ban, width));
    CHECK(force[0] == 4, "mask: after \"Wait\" the rest of the extension is forced (%d)", force[0]);

    /* API misuse gives a status, not a crash. */
    int32_t out[1];
    const int64_t one[] = {0};
    st = s1kit_batch_step(batch, one, NULL, 1, out);
    CHECK(st == S1KIT_STATUS_INVALID_ARGUMENT, "wrong length refused: %s", s1kit_last_error());
    st = s1kit_batch_reset(batch, 5);
    CHECK(st == S1KIT_STATUS_INVALID_ARGUMENT, "slot out of range refused: %s", s1kit_last_error());

    s1kit_batch_free(batch);
    if (failures) {
        printf("budget_demo: %d FAILED\n", failures);
        return 1;
    }
    printf("budget_demo: OK\n");
    return 0;
}
