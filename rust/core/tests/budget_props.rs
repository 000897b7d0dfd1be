//! Invariants of the budget state machine on random specs and token streams.

use std::sync::Arc;

use proptest::prelude::*;
use s1kit_core::budget::{BudgetBatch, BudgetSpec, CompiledSpec, Phase};

const V: u32 = 10;

fn seq() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(0..V, 1..4)
}

fn spec() -> impl Strategy<Value = CompiledSpec> {
    (
        prop::collection::vec(seq(), 1..3),
        prop::collection::vec(seq(), 0..2),
        prop::collection::vec(0..V, 0..2),
        prop::collection::vec(0..V, 1..4),
        prop::collection::vec(seq(), 1..3),
        prop::option::of(0u32..12),
        0u32..6,
        0u32..3,
        0u32..3,
    )
        .prop_filter_map(
            "valid spec",
            |(end, start, eos, prefix, exts, max, min, n, grace)| {
                BudgetSpec {
                    think_end: end,
                    think_start: start,
                    eos,
                    answer_prefix: prefix,
                    extensions: exts,
                    max_thinking_tokens: max,
                    min_thinking_tokens: min.min(max.unwrap_or(min)),
                    num_extensions: n,
                    grace_tokens: grace,
                    newline_tokens: vec![0],
                    ..BudgetSpec::new(V)
                }
                .compile()
                .ok()
            },
        )
}

/// Drive one row; per step: (phase before, override, phase after, thinking after, extensions
/// before, extensions after, automaton state before).
type Log = Vec<(Phase, i32, Phase, u32, u32, u32, u32)>;

fn run(c: &Arc<CompiledSpec>, prompt: &[u32], stream: &[i64]) -> (BudgetBatch, Log) {
    let mut b = BudgetBatch::new(1, 64);
    b.insert(0, c.clone()).unwrap();
    b.process_prompt(0, prompt).unwrap();
    let mut out = [0i32];
    let mut log = Vec::new();
    for &t in stream {
        let before = *b.state(0).unwrap();
        b.step(&[t], &mut out).unwrap();
        let s = b.state(0).unwrap();
        log.push((
            before.phase,
            out[0],
            s.phase,
            s.thinking_tokens,
            before.extensions_used,
            s.extensions_used,
            before.matcher_state,
        ));
    }
    (b, log)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn thinking_never_exceeds_cap_plus_forced_suffix(c in spec(), prompt in prop::collection::vec(0..V, 0..4),
                                                     stream in prop::collection::vec(0i64..V as i64, 0..60)) {
        let c = Arc::new(c);
        let (_, log) = run(&c, &prompt, &stream);
        if let Some(max) = c.spec().max_thinking_tokens {
            let longest = c.spec().extensions.iter().map(Vec::len).max().unwrap_or(0) as u32;
            for &(_, _, _, thinking, _, _, _) in &log {
                prop_assert!(thinking <= max + c.spec().grace_tokens + longest);
            }
        }
    }

    #[test]
    fn forced_sequences_are_emitted_whole_and_in_order(c in spec(), stream in prop::collection::vec(0i64..V as i64, 0..60)) {
        let c = Arc::new(c);
        let (_, log) = run(&c, &[], &stream);
        let mut i = 0;
        while i < log.len() {
            let (before, o, after, _, used, used_after, m) = log[i];
            let started_extension = used_after > used;
            // A forced sequence starts where the row leaves free sampling: find which one. The
            // answer prefix continues the part of it the stream already ends with.
            let seq: Option<&[u32]> = if before == Phase::Thinking && after == Phase::Answer && o >= 0 {
                Some(&c.spec().answer_prefix[c.answer_overlap(m)..])
            } else if before == Phase::Thinking && after == Phase::Thinking && o >= 0 && started_extension {
                let exts = &c.spec().extensions;
                Some(&exts[used as usize % exts.len()][..])
            } else {
                None
            };
            if let Some(seq) = seq {
                for (k, &t) in seq.iter().enumerate() {
                    if i + k < log.len() {
                        prop_assert_eq!(log[i + k].1, t as i32, "token {} of a forced sequence", k);
                    }
                }
                i += seq.len();
            } else {
                i += 1;
            }
        }
    }

    #[test]
    fn no_natural_end_before_minimum_and_extensions(c in spec(), stream in prop::collection::vec(0i64..V as i64, 0..60)) {
        let c = Arc::new(c);
        let mut b = BudgetBatch::new(1, 0);
        b.insert(0, c.clone()).unwrap();
        let mut out = [0i32];
        for &t in &stream {
            let before = *b.state(0).unwrap();
            b.step(&[t], &mut out).unwrap();
            let after = b.state(0).unwrap();
            if before.phase == Phase::Thinking && after.phase != Phase::Thinking && !after.capped && out[0] < 0 {
                prop_assert!(before.thinking_tokens >= c.spec().min_thinking_tokens);
                prop_assert!(before.extensions_used >= c.spec().num_extensions);
            }
        }
    }

    #[test]
    fn error_is_absorbing(c in spec(), pre in prop::collection::vec(0i64..V as i64, 0..20),
                          post in prop::collection::vec(-2i64..V as i64 + 2, 0..20)) {
        let c = Arc::new(c);
        let mut b = BudgetBatch::new(1, 0);
        b.insert(0, c).unwrap();
        let mut out = [0i32];
        for &t in &pre {
            b.step(&[t], &mut out).unwrap();
        }
        let was_idle = matches!(b.state(0).unwrap().phase, Phase::Done);
        b.step(&[i64::from(V) + 5], &mut out).unwrap();
        let frozen = *b.state(0).unwrap();
        if !was_idle && frozen.phase != Phase::Error {
            // A forced token was pending, so the bad sample was never looked at.
            return Ok(());
        }
        for &t in &post {
            b.step(&[t], &mut out).unwrap();
            prop_assert_eq!(out[0], -1);
            prop_assert_eq!(*b.state(0).unwrap(), frozen);
        }
    }

    #[test]
    fn rollback_after_any_steps_restores_the_state_in_every_phase(
        c in spec(), prompt in prop::collection::vec(0..V, 0..4),
        head in prop::collection::vec(-1i64..V as i64 + 1, 0..40),
        tail in prop::collection::vec(-1i64..V as i64 + 1, 0..12),
        flags in prop::collection::vec(any::<bool>(), 12),
        mask_mode in any::<bool>(),
    ) {
        // Whatever the phase the tail reaches (done and error included), rollback(k) after k more
        // steps leaves the row exactly as if they had never been fed; replaying them gives the same.
        let c = Arc::new(c);
        let mut b = BudgetBatch::new(1, 16);
        b.insert(0, c.clone()).unwrap();
        b.process_prompt(0, &prompt).unwrap();
        let mut out = [0i32];
        let feed = |b: &mut BudgetBatch, t: i64, f: bool, out: &mut [i32; 1]| {
            if mask_mode {
                b.advance(&[t], Some(&[u8::from(f)]), None).unwrap();
                out[0] = -1;
            } else {
                b.step(&[t], out).unwrap();
            }
        };
        for &t in &head {
            feed(&mut b, t, false, &mut out);
        }
        let start = *b.state(0).unwrap();
        let mut log = Vec::new();
        for (&t, &f) in tail.iter().zip(&flags) {
            feed(&mut b, t, f, &mut out);
            log.push((out[0], *b.state(0).unwrap()));
        }
        let end = *b.state(0).unwrap();
        for k in 0..=tail.len() {
            let mut r = b.clone();
            r.rollback(0, k).unwrap();
            let expect = if k == tail.len() { start } else { log[tail.len() - k - 1].1 };
            prop_assert_eq!(*r.state(0).unwrap(), expect, "rollback({})", k);
            for (j, (&t, &f)) in tail.iter().zip(&flags).enumerate().skip(tail.len() - k) {
                feed(&mut r, t, f, &mut out);
                prop_assert_eq!((out[0], *r.state(0).unwrap()), log[j]);
            }
            prop_assert_eq!(*r.state(0).unwrap(), end);
        }
        if head.len() + tail.len() < 16 {
            prop_assert!(b.clone().rollback(0, head.len() + tail.len() + 1).is_err());
        }
    }
}
