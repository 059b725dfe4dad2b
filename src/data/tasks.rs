//! Synthetic long-range tasks, generated from a seed at any length, each with its published
//! success criterion and chance baseline.
//!
//! | task | input | target | metric baseline | memoryless loss | solved |
//! |---|---|---|---|---|---|
//! | `dependency` | `when she tried to print her N , <filler> she finally printed her N .`: key noun `l` steps before its repeat | next token (LM) | chance accuracy `1/8` on the repeated noun | - | accuracy >= 99% |
//! | `copy` (Arjovsky et al. 2016) | 10 symbols of 8, `T-1` blanks, delimiter, 10 blanks | `T+10` blanks, the 10 symbols | chance accuracy 1/8 on the recalled symbols | `10 ln 8 / (T + 20)` nats/step | recall accuracy >= 99% |
//! | `adding` (Le et al. 2015) | `T` pairs (value ~ U[0,1], marker), two markers | sum of the marked values at step `T` | MSE 1/6 (predict the mean) | 1/6 | test MSE < 0.01 |
//! | `order` (Hochreiter & Schmidhuber 1997; Pascanu et al. 2013) | `L` symbols: A/B at `[0.1L, 0.2L)` and `[0.5L, 0.6L)`, distractors elsewhere | AA/AB/BA/BB at the end | chance accuracy 1/4 | `ln 4` | error < 1% |
//!
//! All sequences are time-major `[T, B]`; every task fixes `T` from its length parameter so a
//! batch is one rectangular window trained from a zero state.

use crate::error::{Error, Result};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which synthetic task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Dependency,
    Copy,
    Adding,
    Order,
}

impl TaskKind {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "dependency" | "dep" => TaskKind::Dependency,
            "copy" | "copy-memory" => TaskKind::Copy,
            "adding" => TaskKind::Adding,
            "order" | "temporal-order" => TaskKind::Order,
            _ => {
                return Err(Error::Config(format!(
                    "unknown task `{s}`: use dependency, copy, adding or order"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Dependency => "dependency",
            TaskKind::Copy => "copy",
            TaskKind::Adding => "adding",
            TaskKind::Order => "order",
        }
    }
}

/// A task at one length: `l` (dependency distance) or `T` (copy delay, adding/order length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub kind: TaskKind,
    pub length: usize,
}

/// One generated batch, time-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskBatch {
    pub steps: usize,
    pub batch: usize,
    /// `[T, B]` token inputs (empty for the adding problem).
    pub tokens: Vec<u32>,
    /// `[T, B, 2]` dense inputs (adding problem only).
    pub dense: Vec<f64>,
    /// `[T, B]` class targets (empty for the adding problem).
    pub targets: Vec<u32>,
    /// `[T, B]` regression targets (adding problem; only the last step is scored).
    pub real_targets: Vec<f64>,
    /// `[T, B]` loss weights, summing to 1.
    pub weights: Vec<f64>,
    /// Flat indices `t * B + b` where the task metric is read.
    pub scored: Vec<usize>,
}

/// Key nouns of the dependency language; the chance accuracy on the dependent word is 1/8.
pub const NOUNS: [&str; 8] = [
    "tickets", "photos", "letters", "essays", "labels", "invoices", "recipes", "posters",
];
const VERBS: [(&str, &str); 4] = [
    ("print", "printed"),
    ("copy", "copied"),
    ("sign", "signed"),
    ("find", "found"),
];
/// Filler clauses; any prefix of their concatenation is filler (no clause mentions a noun of
/// `NOUNS`, so the filler carries no information about the key).
const FILLER: [&str; 8] = [
    "she found that the printer was out of toner .",
    "she went to the store to buy more toner .",
    "it was very overpriced .",
    "the man at the counter was not very helpful .",
    "after installing the toner into the printer she made some tea .",
    "the rain had not stopped all morning .",
    "her phone rang twice but she did not answer .",
    "the cat slept on the warm windowsill .",
];

/// The dependency language's vocabulary: every word of the templates, nouns, verbs, fillers
/// (built once).
pub fn dependency_vocab() -> &'static [&'static str] {
    static VOCAB: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    VOCAB.get_or_init(build_dependency_vocab)
}

/// Token id of a word of the dependency language.
fn dependency_id(word: &str) -> u32 {
    static IDS: std::sync::OnceLock<std::collections::HashMap<&'static str, u32>> =
        std::sync::OnceLock::new();
    let ids = IDS.get_or_init(|| {
        dependency_vocab()
            .iter()
            .enumerate()
            .map(|(i, w)| (*w, i as u32))
            .collect()
    });
    ids[word]
}

fn build_dependency_vocab() -> Vec<&'static str> {
    let mut words: Vec<&'static str> = vec![];
    let mut add = |w: &'static str| {
        if !words.contains(&w) {
            words.push(w);
        }
    };
    for w in "when she tried to her , . finally".split(' ') {
        add(w);
    }
    NOUNS.iter().for_each(|w| add(w));
    VERBS.iter().for_each(|&(a, b)| {
        add(a);
        add(b)
    });
    FILLER.iter().flat_map(|s| s.split(' ')).for_each(&mut add);
    words
}

/// Tokens of the fixed sentence parts between the key noun and the dependent noun:
/// `, <filler> she finally <verb-ed> her` minus the filler.
const DEPENDENCY_FIXED_BETWEEN: usize = 5;
/// Tokens before the key noun: `when she tried to <verb> her`.
const DEPENDENCY_PREFIX: usize = 6;
/// Smallest distance (no filler): distance = fixed + filler + 1.
pub const DEPENDENCY_MIN_DISTANCE: usize = DEPENDENCY_FIXED_BETWEEN + 1;

/// Copy task: alphabet size and number of symbols to remember.
const COPY_SYMBOLS: u32 = 8;
const COPY_LEN: usize = 10;
const COPY_BLANK: u32 = 8;
const COPY_DELIM: u32 = 9;

/// Temporal order: symbols A = 0, B = 1, distractors 2..6; classes AA, AB, BA, BB = 0..4.
const ORDER_SYMBOLS: u32 = 6;

impl Task {
    pub fn new(kind: TaskKind, length: usize) -> Result<Self> {
        let min = match kind {
            TaskKind::Dependency => DEPENDENCY_MIN_DISTANCE,
            TaskKind::Copy => 1,
            TaskKind::Adding => 2,
            TaskKind::Order => 10,
        };
        if length < min {
            return Err(Error::Config(format!(
                "task {} needs --length >= {min} (got {length})",
                kind.name()
            )));
        }
        Ok(Task { kind, length })
    }

    /// The dependency task's pair of steps `(i, j)`: `i` reads `her` and is scored on the
    /// dependent noun, `j` reads the key noun (`i - j = l - 1`); `None` for other tasks.
    pub fn dependency_steps(&self) -> Option<(usize, usize)> {
        (self.kind == TaskKind::Dependency).then(|| (self.steps() - 2, DEPENDENCY_PREFIX))
    }

    /// Time steps of one sequence.
    pub fn steps(&self) -> usize {
        match self.kind {
            // prefix, key noun, between (fixed + filler), dependent noun, final '.'
            TaskKind::Dependency => DEPENDENCY_PREFIX + self.length + 1,
            TaskKind::Copy => self.length + 2 * COPY_LEN,
            TaskKind::Adding | TaskKind::Order => self.length,
        }
    }

    /// Input vocabulary (also the number of output classes); 1 output for the adding problem.
    pub fn vocab(&self) -> usize {
        match self.kind {
            TaskKind::Dependency => dependency_vocab().len(),
            TaskKind::Copy => (COPY_SYMBOLS + 2) as usize,
            TaskKind::Adding => 1,
            TaskKind::Order => ORDER_SYMBOLS as usize,
        }
    }

    /// Dense input size (2 for the adding problem), 0 for token inputs.
    pub fn input_size(&self) -> usize {
        if self.kind == TaskKind::Adding {
            2
        } else {
            0
        }
    }

    /// The metric a model without memory reaches: chance accuracy (`1/K` over the `K` equally
    /// likely answers: 8 nouns, 8 copied symbols, 4 orders) or, for the adding problem, the
    /// MSE of predicting the mean sum (`1/6`). Named by [`Self::baseline_name`].
    pub fn baseline(&self) -> f64 {
        match self.kind {
            TaskKind::Dependency => 1.0 / NOUNS.len() as f64,
            TaskKind::Copy => 1.0 / COPY_SYMBOLS as f64,
            TaskKind::Adding => 1.0 / 6.0,
            TaskKind::Order => 0.25,
        }
    }

    /// What [`Self::baseline`] is.
    pub fn baseline_name(&self) -> &'static str {
        match self.kind {
            TaskKind::Adding => "MSE of predicting the mean",
            _ => "chance accuracy",
        }
    }

    /// The training loss (nats per weighted step, or the MSE) of the best model without
    /// memory, where it has a closed form: copy `10 ln 8 / (T + 20)` (every step is scored and
    /// only the 10 recalled symbols are unpredictable without memory), order `ln 4`, adding
    /// `1/6`. `None` for the dependency language (its filler words are partly predictable).
    pub fn loss_baseline(&self) -> Option<f64> {
        match self.kind {
            TaskKind::Dependency => None,
            TaskKind::Copy => Some(
                COPY_LEN as f64 * (COPY_SYMBOLS as f64).ln() / (self.length + 2 * COPY_LEN) as f64,
            ),
            TaskKind::Adding => Some(1.0 / 6.0),
            TaskKind::Order => Some(4f64.ln()),
        }
    }

    /// Name of the metric and of the baseline, for tables.
    pub fn metric_name(&self) -> &'static str {
        match self.kind {
            TaskKind::Adding => "test MSE",
            _ => "accuracy",
        }
    }

    /// Whether a metric value meets the task's published success criterion.
    pub fn solved(&self, metric: f64) -> bool {
        match self.kind {
            TaskKind::Adding => metric < 0.01,
            _ => metric >= 0.99,
        }
    }

    /// Generates `batch` sequences.
    pub fn generate(&self, batch: usize, rng: &mut StdRng) -> TaskBatch {
        let steps = self.steps();
        let n = steps * batch;
        let mut out = TaskBatch {
            steps,
            batch,
            weights: vec![0.0; n],
            ..Default::default()
        };
        match self.kind {
            TaskKind::Adding => {
                out.dense = vec![0.0; n * 2];
                out.real_targets = vec![0.0; n];
            }
            _ => {
                out.tokens = vec![0; n];
                out.targets = vec![0; n];
            }
        }
        for b in 0..batch {
            match self.kind {
                TaskKind::Dependency => self.dependency(&mut out, b, rng),
                TaskKind::Copy => self.copy(&mut out, b, rng),
                TaskKind::Adding => self.adding(&mut out, b, rng),
                TaskKind::Order => self.order(&mut out, b, rng),
            }
        }
        out.scored.sort_unstable();
        out
    }

    /// `when she tried to V her N , <filler> she finally V-ed her N .` — a language model
    /// trained on every next token; the metric reads the prediction of the second `N`.
    fn dependency(&self, out: &mut TaskBatch, b: usize, rng: &mut StdRng) {
        let id = dependency_id;
        let noun = NOUNS[rng.gen_range(0..NOUNS.len())];
        let (verb, verbed) = VERBS[rng.gen_range(0..VERBS.len())];
        let filler_len = self.length - DEPENDENCY_FIXED_BETWEEN - 1;
        let mut words: Vec<&str> = vec!["when", "she", "tried", "to", verb, "her", noun, ","];
        let mut clause = rng.gen_range(0..FILLER.len());
        let mut filler: Vec<&str> = Vec::with_capacity(filler_len);
        while filler.len() < filler_len {
            filler.extend(FILLER[clause].split(' '));
            clause = rng.gen_range(0..FILLER.len());
        }
        filler.truncate(filler_len);
        words.extend(filler);
        words.extend(["she", "finally", verbed, "her", noun, "."]);
        // Sequence = words[..steps], target = words[1..=steps]: `steps + 1` words in all.
        debug_assert_eq!(words.len(), self.steps() + 1);
        let steps = self.steps();
        let w = 1.0 / (steps * out.batch) as f64;
        for t in 0..steps {
            let r = t * out.batch + b;
            out.tokens[r] = id(words[t]);
            out.targets[r] = id(words[t + 1]);
            out.weights[r] = w;
        }
        // The dependent noun is the target at step steps - 2 (its input is `her`).
        out.scored.push((steps - 2) * out.batch + b);
    }

    fn copy(&self, out: &mut TaskBatch, b: usize, rng: &mut StdRng) {
        let steps = self.steps();
        let w = 1.0 / (steps * out.batch) as f64;
        for t in 0..steps {
            let r = t * out.batch + b;
            out.tokens[r] = COPY_BLANK;
            out.targets[r] = COPY_BLANK;
            out.weights[r] = w;
        }
        for k in 0..COPY_LEN {
            let s = rng.gen_range(0..COPY_SYMBOLS);
            out.tokens[k * out.batch + b] = s;
            let t = self.length + COPY_LEN + k;
            out.targets[t * out.batch + b] = s;
            out.scored.push(t * out.batch + b);
        }
        out.tokens[(self.length + COPY_LEN - 1) * out.batch + b] = COPY_DELIM;
    }

    fn adding(&self, out: &mut TaskBatch, b: usize, rng: &mut StdRng) {
        let t_len = self.length;
        let first = rng.gen_range(0..t_len / 2);
        let second = rng.gen_range(t_len / 2..t_len);
        let mut sum = 0.0;
        for t in 0..t_len {
            let r = t * out.batch + b;
            let v: f64 = rng.gen();
            out.dense[2 * r] = v;
            if t == first || t == second {
                out.dense[2 * r + 1] = 1.0;
                sum += v;
            }
        }
        let last = (t_len - 1) * out.batch + b;
        out.real_targets[last] = sum;
        out.weights[last] = 1.0 / out.batch as f64;
        out.scored.push(last);
    }

    fn order(&self, out: &mut TaskBatch, b: usize, rng: &mut StdRng) {
        let l = self.length as f64;
        let p1 = rng.gen_range((0.1 * l) as usize..(0.2 * l) as usize);
        let p2 = rng.gen_range((0.5 * l) as usize..(0.6 * l) as usize);
        let (s1, s2) = (rng.gen_range(0..2u32), rng.gen_range(0..2u32));
        for t in 0..self.length {
            let r = t * out.batch + b;
            out.tokens[r] = if t == p1 {
                s1
            } else if t == p2 {
                s2
            } else {
                rng.gen_range(2..ORDER_SYMBOLS)
            };
        }
        let last = (self.length - 1) * out.batch + b;
        out.targets[last] = 2 * s1 + s2;
        out.weights[last] = 1.0 / out.batch as f64;
        out.scored.push(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    #[test]
    fn same_seed_same_data_and_weights_sum_to_one() {
        for (kind, len) in [
            (TaskKind::Dependency, 20),
            (TaskKind::Copy, 30),
            (TaskKind::Adding, 50),
            (TaskKind::Order, 40),
        ] {
            let task = Task::new(kind, len).unwrap();
            let a = task.generate(7, &mut rng(3));
            assert_eq!(a, task.generate(7, &mut rng(3)), "{kind:?}");
            assert_ne!(a, task.generate(7, &mut rng(4)), "{kind:?}");
            assert!((a.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert_eq!(a.steps, task.steps());
        }
    }

    #[test]
    fn dependency_key_noun_repeats_exactly_l_steps_later() {
        let vocab = dependency_vocab();
        for l in [6, 7, 25, 60] {
            let task = Task::new(TaskKind::Dependency, l).unwrap();
            let b = task.generate(50, &mut rng(l as u64));
            let mut counts = [0usize; NOUNS.len()];
            for &r in &b.scored {
                let (t, col) = (r / b.batch, r % b.batch);
                let answer = &vocab[b.targets[r] as usize];
                let k = NOUNS
                    .iter()
                    .position(|n| n == answer)
                    .expect("answer is a noun");
                counts[k] += 1;
                // Input position of the key noun: the answer's position minus l.
                let key = &vocab[b.tokens[(t + 1 - l) * b.batch + col] as usize];
                assert_eq!(key, answer, "distance {l}");
                assert_eq!(task.dependency_steps(), Some((t, t + 1 - l)));
                // No other noun appears in between.
                for s in t + 2 - l..=t {
                    let w = vocab[b.tokens[s * b.batch + col] as usize];
                    assert!(!NOUNS.contains(&w), "filler holds a noun: {w}");
                }
            }
            assert!(counts.iter().filter(|&&c| c > 0).count() > 3);
        }
        // Chance baseline from the data: noun frequencies are uniform (1/8 each).
        let task = Task::new(TaskKind::Dependency, 10).unwrap();
        let b = task.generate(40_000, &mut rng(1));
        let mut counts = [0f64; NOUNS.len()];
        for &r in &b.scored {
            counts[NOUNS
                .iter()
                .position(|n| *n == vocab[b.targets[r] as usize])
                .unwrap()] += 1.0;
        }
        let best_guess = counts.iter().cloned().fold(0.0, f64::max) / b.scored.len() as f64;
        assert!((best_guess - task.baseline()).abs() < 0.01, "{best_guess}");
        assert_eq!(
            Task::new(TaskKind::Dependency, DEPENDENCY_MIN_DISTANCE - 1)
                .err()
                .unwrap()
                .to_string(),
            format!(
                "invalid configuration: task dependency needs --length >= {DEPENDENCY_MIN_DISTANCE} (got {})",
                DEPENDENCY_MIN_DISTANCE - 1
            )
        );
    }

    #[test]
    fn copy_layout_and_memoryless_baseline() {
        let t_delay = 30;
        let task = Task::new(TaskKind::Copy, t_delay).unwrap();
        let b = task.generate(20_000, &mut rng(5));
        let (steps, batch) = (b.steps, b.batch);
        assert_eq!(steps, t_delay + 20);
        for col in 0..5 {
            let at = |v: &Vec<u32>, t: usize| v[t * batch + col];
            for k in 0..10 {
                assert!(at(&b.tokens, k) < 8);
                assert_eq!(at(&b.targets, t_delay + 10 + k), at(&b.tokens, k));
            }
            for t in 10..steps {
                let want = if t == t_delay + 9 {
                    COPY_DELIM
                } else {
                    COPY_BLANK
                };
                assert_eq!(at(&b.tokens, t), want, "input at {t}");
            }
            for t in 0..t_delay + 10 {
                assert_eq!(at(&b.targets, t), COPY_BLANK);
            }
        }
        // Memoryless predictor: the empirical target distribution at each position.
        let mut ce = 0.0;
        for t in 0..steps {
            let mut counts = [0f64; 10];
            for col in 0..batch {
                counts[b.targets[t * batch + col] as usize] += 1.0;
            }
            ce -= counts
                .iter()
                .filter(|&&c| c > 0.0)
                .map(|c| c / batch as f64 * (c / batch as f64).ln())
                .sum::<f64>();
        }
        let per_step = ce / steps as f64;
        let formula = 10.0 * 8f64.ln() / (t_delay as f64 + 20.0);
        assert!(
            (per_step - formula).abs() < 0.002 * formula + 1e-3,
            "{per_step} vs {formula}"
        );
        // A loss baseline; the accuracy baseline is chance on the 8 symbols.
        assert!((task.loss_baseline().unwrap() - formula).abs() < 1e-15);
        let long = Task::new(TaskKind::Copy, 100).unwrap();
        assert!((long.loss_baseline().unwrap() - 0.1733).abs() < 1e-4);
        assert_eq!(
            (task.baseline(), task.baseline_name()),
            (0.125, "chance accuracy")
        );
    }

    #[test]
    fn adding_markers_and_mean_predictor_baseline() {
        let t_len = 100;
        let task = Task::new(TaskKind::Adding, t_len).unwrap();
        let b = task.generate(40_000, &mut rng(6));
        let batch = b.batch;
        let mut targets = vec![];
        for col in 0..batch {
            let marked: Vec<usize> = (0..t_len)
                .filter(|&t| b.dense[2 * (t * batch + col) + 1] == 1.0)
                .collect();
            assert_eq!(marked.len(), 2);
            assert!(marked[0] < t_len / 2 && marked[1] >= t_len / 2);
            let sum: f64 = marked.iter().map(|&t| b.dense[2 * (t * batch + col)]).sum();
            let last = (t_len - 1) * batch + col;
            assert_eq!(b.real_targets[last], sum);
            assert!(b.scored.contains(&last));
            targets.push(sum);
        }
        let mean = targets.iter().sum::<f64>() / targets.len() as f64;
        let mse = targets.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / targets.len() as f64;
        assert!((mean - 1.0).abs() < 0.01);
        assert!((mse - 1.0 / 6.0).abs() < 0.005, "{mse}");
        assert!(task.solved(0.009) && !task.solved(0.011));
    }

    #[test]
    fn order_symbols_positions_and_chance() {
        let l = 50;
        let task = Task::new(TaskKind::Order, l).unwrap();
        let b = task.generate(20_000, &mut rng(7));
        let mut classes = [0f64; 4];
        for col in 0..b.batch {
            let rel: Vec<(usize, u32)> = (0..l)
                .map(|t| (t, b.tokens[t * b.batch + col]))
                .filter(|&(_, s)| s < 2)
                .collect();
            assert_eq!(rel.len(), 2);
            assert!(
                (5..10).contains(&rel[0].0) && (25..30).contains(&rel[1].0),
                "{rel:?}"
            );
            let class = b.targets[(l - 1) * b.batch + col];
            assert_eq!(class, 2 * rel[0].1 + rel[1].1);
            classes[class as usize] += 1.0;
        }
        for c in classes {
            assert!((c / b.batch as f64 - task.baseline()).abs() < 0.015);
        }
    }
}
