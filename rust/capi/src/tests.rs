//! The C entry points, called as C would: statuses, last-error messages, cap and extension.

use std::ffi::CStr;
use std::ptr;

use super::*;

// Token ids: 1 "<think>", 2 "</think>", 3 "Wait", 9 EOS; the rest is ordinary text.
const THINK_START: [u32; 1] = [1];
const THINK_END: [u32; 1] = [2];
const WAIT: [u32; 1] = [3];
const EOS: [u32; 1] = [9];
const ONE: [u32; 1] = [1];

fn seqs(ids: &[u32], lens: &[u32]) -> S1kitSeqs {
    S1kitSeqs {
        ids: ids.as_ptr(),
        lens: lens.as_ptr(),
        count: lens.len(),
    }
}

fn no_seqs() -> S1kitSeqs {
    S1kitSeqs {
        ids: ptr::null(),
        lens: ptr::null(),
        count: 0,
    }
}

fn desc(max_thinking: i64, num_extensions: u32) -> S1kitSpecDesc {
    S1kitSpecDesc {
        vocab_size: 16,
        think_start: seqs(&THINK_START, &ONE),
        think_end: seqs(&THINK_END, &ONE),
        eos: EOS.as_ptr(),
        eos_len: 1,
        answer_prefix: THINK_END.as_ptr(),
        answer_prefix_len: 1,
        extensions: seqs(&WAIT, &ONE),
        max_thinking_tokens: max_thinking,
        min_thinking_tokens: 0,
        num_extensions,
        grace_tokens: 0,
        newline_tokens: ptr::null(),
        newline_tokens_len: 0,
        max_answer_tokens: -1,
        answer_stop: no_seqs(),
    }
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(s1kit_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn state(batch: *mut S1kitBatch, slot: usize) -> S1kitRowState {
    let mut s = S1kitRowState::default();
    assert_eq!(
        unsafe { s1kit_batch_row_state(batch, slot, &mut s) },
        S1kitStatus::Ok
    );
    s
}

#[test]
fn override_mode_caps_and_extends_like_the_core() {
    unsafe {
        let mut spec = ptr::null_mut();
        assert_eq!(s1kit_spec_new(&desc(4, 1), &mut spec), S1kitStatus::Ok);
        let mut batch = ptr::null_mut();
        assert_eq!(s1kit_batch_new(1, 8, &mut batch), S1kitStatus::Ok);
        assert_eq!(s1kit_batch_insert(batch, 0, spec), S1kitStatus::Ok);
        s1kit_spec_free(spec); // the row keeps its own reference
        let prompt = [5u32, 1];
        assert_eq!(
            s1kit_batch_process_prompt(batch, 0, prompt.as_ptr(), 2),
            S1kitStatus::Ok
        );
        let mut out = [0i32];
        let mut emitted = Vec::new();
        for sampled in [7i64, 2, 7, 7, 7, 8, 9] {
            let st = s1kit_batch_step(batch, &sampled, ptr::null(), 1, out.as_mut_ptr());
            assert_eq!(st, S1kitStatus::Ok);
            emitted.push(if out[0] >= 0 {
                i64::from(out[0])
            } else {
                sampled
            });
        }
        // "</think>" at step 2 became "Wait"; the cap (4) forced "</think>"; EOS ended the answer.
        assert_eq!(emitted, [7, 3, 7, 7, 2, 8, 9]);
        let s = state(batch, 0);
        assert_eq!(
            (s.phase, s.capped, s.thinking_tokens, s.extensions_used),
            (S1KIT_PHASE_DONE, true, 4, 1)
        );
        assert_eq!((s.answer_tokens, s.forced_tokens), (3, 2));
        s1kit_batch_free(batch);
    }
}

#[test]
fn mask_mode_bans_the_end_and_redirects_to_wait() {
    unsafe {
        let mut spec = ptr::null_mut();
        assert_eq!(s1kit_spec_new(&desc(-1, 1), &mut spec), S1kitStatus::Ok);
        let mut width = 0usize;
        assert_eq!(s1kit_spec_ban_width(spec, &mut width), S1kitStatus::Ok);
        let mut batch = ptr::null_mut();
        assert_eq!(s1kit_batch_new(2, 0, &mut batch), S1kitStatus::Ok);
        assert_eq!(s1kit_batch_insert(batch, 1, spec), S1kitStatus::Ok);
        assert_eq!(
            s1kit_batch_process_prompt(batch, 1, THINK_START.as_ptr(), 1),
            S1kitStatus::Ok
        );
        let rows = [1u32];
        let (mut force, mut redirect) = ([0i32], [0i32]);
        let mut ban = vec![0i32; width];
        let st = s1kit_batch_mask(
            batch,
            rows.as_ptr(),
            1,
            force.as_mut_ptr(),
            redirect.as_mut_ptr(),
            ban.as_mut_ptr(),
            width,
        );
        assert_eq!(st, S1kitStatus::Ok);
        assert_eq!((force[0], redirect[0]), (-1, 3));
        let mut banned: Vec<i32> = ban.iter().copied().filter(|&t| t >= 0).collect();
        banned.sort_unstable();
        assert_eq!(banned, [2, 9]);
        // The model's own "Wait" (3), its own logit above the end attempts', is taken as sampled.
        assert_eq!(
            s1kit_batch_advance(batch, &3i64, &0u8, rows.as_ptr(), 1),
            S1kitStatus::Ok
        );
        assert_eq!(state(batch, 1).extensions_used, 0);
        // The end attempts outranked "Wait" (flag 1): its emission stands for the attempt.
        assert_eq!(
            s1kit_batch_advance(batch, &3i64, &1u8, rows.as_ptr(), 1),
            S1kitStatus::Ok
        );
        assert_eq!(state(batch, 1).extensions_used, 1);
        assert_eq!(state(batch, 0).phase, S1KIT_PHASE_EMPTY);
        s1kit_spec_free(spec);
        s1kit_batch_free(batch);
    }
}

#[test]
fn errors_return_a_status_and_a_message() {
    unsafe {
        let mut d = desc(4, 0);
        d.answer_prefix_len = 0;
        let mut spec = ptr::null_mut();
        assert_eq!(s1kit_spec_new(&d, &mut spec), S1kitStatus::InvalidSpec);
        assert!(
            last_error().contains("answer_prefix is empty"),
            "{}",
            last_error()
        );
        assert!(spec.is_null());

        d = desc(4, 0);
        d.eos = ptr::null();
        assert_eq!(s1kit_spec_new(&d, &mut spec), S1kitStatus::NullPointer);
        assert!(last_error().contains("eos"));

        let mut batch = ptr::null_mut();
        assert_eq!(
            s1kit_batch_new(0, 0, &mut batch),
            S1kitStatus::InvalidArgument
        );
        assert_eq!(s1kit_batch_new(2, 1, &mut batch), S1kitStatus::Ok);
        let mut out = [0i32; 2];
        let sampled = [1i64];
        let st = s1kit_batch_step(batch, sampled.as_ptr(), ptr::null(), 1, out.as_mut_ptr());
        assert_eq!(st, S1kitStatus::InvalidArgument);
        assert!(last_error().contains("one token per slot"));
        assert_eq!(s1kit_batch_reset(batch, 0), S1kitStatus::EmptySlot);
        assert_eq!(s1kit_batch_swap(batch, 0, 7), S1kitStatus::InvalidArgument);
        assert_eq!(
            s1kit_batch_insert(batch, 0, ptr::null()),
            S1kitStatus::NullPointer
        );
        assert_eq!(s1kit_spec_new(&desc(4, 0), &mut spec), S1kitStatus::Ok);
        assert_eq!(s1kit_batch_insert(batch, 0, spec), S1kitStatus::Ok);
        assert_eq!(
            s1kit_batch_rollback(batch, 0, 3),
            S1kitStatus::RollbackTooDeep
        );
        assert_eq!(
            s1kit_batch_step(
                ptr::null_mut(),
                sampled.as_ptr(),
                ptr::null(),
                1,
                out.as_mut_ptr()
            ),
            S1kitStatus::NullPointer
        );
        s1kit_spec_free(spec);
        s1kit_batch_free(batch);
    }
}

#[test]
fn a_panic_is_stopped_at_the_boundary() {
    let st = guard(|| panic!("boom"));
    assert_eq!(st, S1kitStatus::Panic);
    assert!(last_error().contains("boom"));
}

#[test]
fn huge_capacity_and_rollback_are_statuses_not_aborts() {
    unsafe {
        let mut batch = ptr::null_mut();
        for (cap, rollback) in [
            (1usize << 40, 0usize),
            (usize::MAX, 0),
            (1 << 24 | 1, 0),
            (4, 1 << 40),
        ] {
            assert_eq!(
                s1kit_batch_new(cap, rollback, &mut batch),
                S1kitStatus::InvalidArgument,
                "capacity {cap}, max_rollback {rollback}"
            );
            assert!(batch.is_null());
            assert!(
                last_error().contains("capacity") || last_error().contains("max_rollback"),
                "{}",
                last_error()
            );
        }
    }
}

#[test]
fn insert_into_an_occupied_slot_and_remove_of_an_empty_one_are_errors() {
    unsafe {
        let mut spec = ptr::null_mut();
        assert_eq!(s1kit_spec_new(&desc(4, 0), &mut spec), S1kitStatus::Ok);
        let mut batch = ptr::null_mut();
        assert_eq!(s1kit_batch_new(2, 0, &mut batch), S1kitStatus::Ok);
        assert_eq!(s1kit_batch_remove(batch, 1), S1kitStatus::EmptySlot);
        assert_eq!(s1kit_batch_insert(batch, 1, spec), S1kitStatus::Ok);
        assert_eq!(
            s1kit_batch_insert(batch, 1, spec),
            S1kitStatus::InvalidArgument
        );
        assert!(
            last_error().contains("already holds a row"),
            "{}",
            last_error()
        );
        assert_eq!(s1kit_batch_remove(batch, 1), S1kitStatus::Ok);
        assert_eq!(s1kit_batch_insert(batch, 1, spec), S1kitStatus::Ok);
        s1kit_spec_free(spec);
        s1kit_batch_free(batch);
    }
}

/// A fixed-seed xorshift generator: the fuzz test below is the same sequence of calls on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 20,000 random calls with random slots, counts, tokens and buffer sizes (always valid memory for
/// the count passed, as the C contract requires): every call returns a status, none is a panic, and
/// the process never aborts.
#[test]
fn random_calls_only_ever_return_statuses() {
    let mut rng = XorShift(0x5EED_1234_ABCD_0001);
    unsafe {
        let mut specs = Vec::new();
        for (cap, ext) in [(4i64, 1u32), (-1, 0), (0, 2), (9, 1)] {
            let mut spec = ptr::null_mut();
            assert_eq!(s1kit_spec_new(&desc(cap, ext), &mut spec), S1kitStatus::Ok);
            specs.push(spec);
        }
        let mut batch = ptr::null_mut();
        assert_eq!(s1kit_batch_new(6, 3, &mut batch), S1kitStatus::Ok);
        let mut seen = std::collections::BTreeMap::<i32, usize>::new();
        for _ in 0..20_000 {
            // Slots mostly inside the batch, sometimes outside; counts sometimes wrong.
            let slot = if rng.below(8) == 0 {
                rng.below(1 << 20) as usize
            } else {
                rng.below(7) as usize
            };
            let n = if rng.below(6) == 0 {
                rng.below(12) as usize
            } else {
                6
            };
            let tokens: Vec<i64> = (0..n)
                .map(|_| match rng.below(10) {
                    0 => -(rng.below(5) as i64) - 1,
                    1 => rng.next() as i64,
                    _ => rng.below(20) as i64,
                })
                .collect();
            let rows: Vec<u32> = (0..n).map(|_| rng.below(8) as u32).collect();
            let rows_ptr = if rng.below(2) == 0 {
                ptr::null()
            } else {
                rows.as_ptr()
            };
            let mut out = vec![0i32; n];
            let mut redirect = vec![0i32; n];
            let width = rng.below(5) as usize;
            let mut ban = vec![0i32; n * width];
            let st = match rng.below(11) {
                0 => s1kit_batch_insert(batch, slot, specs[rng.below(4) as usize]),
                1 => s1kit_batch_remove(batch, slot),
                2 => s1kit_batch_swap(batch, slot, rng.below(7) as usize),
                3 => s1kit_batch_move(batch, slot, rng.below(7) as usize),
                4 => s1kit_batch_reset(batch, slot),
                5 => s1kit_batch_rollback(batch, slot, rng.below(6) as usize),
                6 => {
                    let prompt: Vec<u32> =
                        (0..rng.below(4)).map(|_| rng.below(24) as u32).collect();
                    s1kit_batch_process_prompt(batch, slot, prompt.as_ptr(), prompt.len())
                }
                7 => s1kit_batch_step(batch, tokens.as_ptr(), rows_ptr, n, out.as_mut_ptr()),
                8 => s1kit_batch_mask(
                    batch,
                    rows_ptr,
                    n,
                    out.as_mut_ptr(),
                    redirect.as_mut_ptr(),
                    ban.as_mut_ptr(),
                    width,
                ),
                9 => {
                    let flags: Vec<u8> = (0..n).map(|_| rng.below(2) as u8).collect();
                    let flags_ptr = if rng.below(2) == 0 {
                        ptr::null()
                    } else {
                        flags.as_ptr()
                    };
                    s1kit_batch_advance(batch, tokens.as_ptr(), flags_ptr, rows_ptr, n)
                }
                _ => {
                    let mut s = S1kitRowState::default();
                    s1kit_batch_row_state(batch, slot, &mut s)
                }
            };
            assert_ne!(st, S1kitStatus::Panic, "{}", last_error());
            *seen.entry(st as i32).or_default() += 1;
        }
        // The sequence reaches both successes and refusals (the test exercises both paths).
        assert!(
            seen.get(&(S1kitStatus::Ok as i32)).copied().unwrap_or(0) > 1000,
            "{seen:?}"
        );
        assert!(
            seen.get(&(S1kitStatus::InvalidArgument as i32))
                .copied()
                .unwrap_or(0)
                > 100,
            "{seen:?}"
        );
        assert!(
            seen.get(&(S1kitStatus::EmptySlot as i32))
                .copied()
                .unwrap_or(0)
                > 10,
            "{seen:?}"
        );
        for spec in specs {
            s1kit_spec_free(spec);
        }
        s1kit_batch_free(batch);
    }
}
