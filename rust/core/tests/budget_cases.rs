//! The budget core on the exact cases that once went wrong (issues 13, 16 and 17).

use std::sync::Arc;

use s1kit_core::budget::{BudgetBatch, BudgetSpec, CompiledSpec, Phase};

fn compile(s: BudgetSpec) -> Arc<CompiledSpec> {
    Arc::new(s.compile().expect("valid spec"))
}

fn batch(c: &Arc<CompiledSpec>, prompt: &[u32]) -> BudgetBatch {
    let mut b = BudgetBatch::new(1, 8);
    b.insert(0, c.clone()).unwrap();
    b.process_prompt(0, prompt).unwrap();
    b
}

/// Override mode: the emitted stream (the replacing token, or the sampled one).
fn run(b: &mut BudgetBatch, sampled: &[i64]) -> Vec<i64> {
    let mut out = [0i32];
    sampled
        .iter()
        .map(|&t| {
            b.step(&[t], &mut out).unwrap();
            if out[0] >= 0 {
                i64::from(out[0])
            } else {
                t
            }
        })
        .collect()
}

#[test]
fn rollback_after_done_undoes_the_steps_fed_after_the_end_first() {
    let c = compile(BudgetSpec {
        think_end: vec![vec![5]],
        eos: vec![9],
        ..BudgetSpec::new(10)
    });
    let mut b = batch(&c, &[]);
    run(&mut b, &[5, 4, 9]);
    let done = *b.state(0).unwrap();
    assert_eq!(done.phase, Phase::Done);
    run(&mut b, &[4]);
    b.rollback(0, 1).unwrap();
    assert_eq!(
        *b.state(0).unwrap(),
        done,
        "rollback(1) undoes the step fed after the end"
    );
    b.rollback(0, 1).unwrap();
    assert_eq!(b.state(0).unwrap().phase, Phase::Answer);
    assert_eq!(b.state(0).unwrap().answer_tokens, 1);
}

#[test]
fn rollback_over_the_end_is_not_refused() {
    let c = compile(BudgetSpec {
        think_end: vec![vec![5, 5, 6]],
        eos: vec![9],
        ..BudgetSpec::new(10)
    });
    let mut b = batch(&c, &[]);
    let fresh = *b.state(0).unwrap();
    run(&mut b, &[9, 0]);
    assert_eq!(b.state(0).unwrap().phase, Phase::Done);
    b.rollback(0, 2).unwrap();
    assert_eq!(*b.state(0).unwrap(), fresh);
}

#[test]
fn zero_answer_tokens_lets_no_answer_token_through() {
    let c = compile(BudgetSpec {
        think_end: vec![vec![6]],
        max_answer_tokens: Some(0),
        ..BudgetSpec::new(10)
    });
    let mut b = batch(&c, &[]);
    run(&mut b, &[6]);
    assert_eq!(b.state(0).unwrap().phase, Phase::Done);
    run(&mut b, &[4]);
    assert_eq!(b.state(0).unwrap().answer_tokens, 0);
    // A prompt that already ended thinking leaves nothing to answer either.
    let b = batch(&c, &[6]);
    assert_eq!(b.state(0).unwrap().phase, Phase::Done);
}

#[test]
fn forced_answer_prefix_continues_the_models_own_delimiter() {
    // Ids: 1 = "\n", 5 = "<|im_start|>", 7 = "answer", 8 = "Final Answer:". The model wrote "\n"
    // (the start of its own "\n<|im_start|>") when the cap hit: the forced text continues it.
    let c = compile(BudgetSpec {
        think_end: vec![vec![5]],
        eos: vec![9],
        answer_prefix: vec![1, 5, 7, 8],
        max_thinking_tokens: Some(3),
        ..BudgetSpec::new(10)
    });
    let mut b = batch(&c, &[]);
    let out = run(&mut b, &[2, 3, 1, 5, 0, 0, 0]);
    assert_eq!(out, [2, 3, 1, 5, 7, 8, 0], "not .\\n\\n<|im_start|>answer");
    let s = b.state(0).unwrap();
    assert_eq!(
        (s.thinking_tokens, s.forced_tokens, s.answer_tokens),
        (3, 3, 4)
    );
    // The same for an EOS the model emits right after its "\n".
    let c = compile(BudgetSpec {
        think_end: vec![vec![5]],
        eos: vec![9],
        answer_prefix: vec![1, 5, 7, 8],
        ..BudgetSpec::new(10)
    });
    let mut b = batch(&c, &[]);
    assert_eq!(run(&mut b, &[2, 1, 9, 0, 0]), [2, 1, 5, 7, 8]);
    // Without the "\n" the whole prefix is forced.
    let mut b = batch(&c, &[]);
    assert_eq!(run(&mut b, &[2, 9, 0, 0, 0]), [2, 1, 5, 7, 8]);
}

#[test]
fn specs_that_mask_mode_cannot_run_are_refused() {
    let base = BudgetSpec {
        think_end: vec![vec![5, 6]],
        eos: vec![9],
        answer_prefix: vec![1, 5, 6],
        num_extensions: 1,
        ..BudgetSpec::new(10)
    };
    let refused = |s: BudgetSpec, needle: &str| {
        let e = s.compile().expect_err("refused").to_string();
        assert!(e.contains(needle), "{e}");
    };
    // The extension's first token completes the end delimiter.
    refused(
        BudgetSpec {
            extensions: vec![vec![6, 2]],
            ..base.clone()
        },
        "completes the think_end spelling",
    );
    // The extension is the end delimiter (issue 16: it could never end).
    refused(
        BudgetSpec {
            extensions: vec![vec![5, 6]],
            ..base.clone()
        },
        "starts with the think_end spelling",
    );
    refused(
        BudgetSpec {
            extensions: vec![vec![9]],
            ..base.clone()
        },
        "starts with an EOS id",
    );
    refused(
        BudgetSpec {
            extensions: vec![vec![3]],
            answer_prefix: vec![1, 9],
            ..base.clone()
        },
        "answer_prefix holds the EOS id 9",
    );
    // Single-token delimiter used as the extension.
    refused(
        BudgetSpec {
            think_end: vec![vec![5]],
            extensions: vec![vec![5]],
            min_thinking_tokens: 1,
            ..base.clone()
        },
        "think_end",
    );
    BudgetSpec {
        extensions: vec![vec![3, 6]],
        ..base
    }
    .compile()
    .expect("an extension may hold delimiter tokens after its first");
}

#[test]
fn mask_mode_declined_redirect_takes_the_models_own_extension_token_as_sampled() {
    // Issue 13, 6b: think_end [[6]], extensions [[7, 5]], one extension; the model samples 7 (its
    // own "Wait") then 0. Override gives 7, 0; mask mode with the redirect declined gives the same.
    let c = compile(BudgetSpec {
        think_end: vec![vec![6]],
        extensions: vec![vec![7, 5]],
        num_extensions: 1,
        ..BudgetSpec::new(10)
    });
    let mut b = batch(&c, &[]);
    assert_eq!(run(&mut b, &[7, 0]), [7, 0]);
    let over = *b.state(0).unwrap();
    let mut m = batch(&c, &[]);
    m.advance(&[7], Some(&[0]), None).unwrap();
    m.advance(&[0], Some(&[0]), None).unwrap();
    assert_eq!(*m.state(0).unwrap(), over);
}

#[test]
fn mask_mode_redirects_an_allowed_eos_in_thinking_to_the_answer_prefix() {
    // Issue 13, 6a: think_end [[5, 6]], eos [9], answer_prefix [10]; the model samples 9.
    let c = compile(BudgetSpec {
        think_end: vec![vec![5, 6]],
        eos: vec![9],
        answer_prefix: vec![10],
        ..BudgetSpec::new(12)
    });
    let mut force = [0i32];
    let mut redirect = [0i32];
    let mut ban = vec![0i32; c.ban_width()];
    let mut m = batch(&c, &[]);
    m.mask(
        None,
        1,
        s1kit_core::budget::MaskOut {
            force: &mut force,
            redirect: &mut redirect,
            ban: &mut ban,
            width: c.ban_width(),
        },
    )
    .unwrap();
    assert_eq!((force[0], redirect[0]), (-1, 10));
    assert!(ban.contains(&9));
    m.advance(&[10], Some(&[1]), None).unwrap();
    let mut o = batch(&c, &[]);
    assert_eq!(run(&mut o, &[9]), [10]);
    assert_eq!(m.state(0), o.state(0));
    assert_eq!(m.state(0).unwrap().phase, Phase::Answer);
}
