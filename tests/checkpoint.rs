//! Checkpoint round trips and refusals.

mod common;

use common::*;
use rnnscope::checkpoint::{self, write_tensors, TensorFile};
use rnnscope::{Activation, CellKind, LanguageModel, State, Workspace};
use std::collections::HashMap;
use std::path::PathBuf;

/// A fresh folder (removed when the first value drops) and the checkpoint path inside it.
fn tmp(name: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(&format!("ckpt-{name}"));
    let path = dir.join("model.safetensors");
    (dir, path)
}

fn logits(m: &LanguageModel<f32>) -> Vec<f32> {
    let (t, b) = (6, 2);
    let mut ws = Workspace::default();
    let inp = tokens(t * b, m.config.vocab, 5);
    m.forward(&mut ws, &inp, &State::zeros(&m.config, b), t, b, None);
    ws.logits.clone()
}

fn f32_model(cell: CellKind, activation: Activation, tie: bool) -> LanguageModel<f32> {
    let m64 = model(config(cell, activation, 2, tie), 9);
    let mut m = LanguageModel::<f32>::zeros(m64.config.clone()).unwrap();
    for (d, s) in m.params_mut().iter_mut().zip(m64.params()) {
        *d = *s as f32;
    }
    m
}

#[test]
fn save_then_load_gives_identical_outputs() {
    for (cell, act, tie) in [
        (CellKind::Rnn, Activation::Relu, false),
        (CellKind::Lstm, Activation::Tanh, true),
        (CellKind::Gru, Activation::Tanh, false),
        (CellKind::Rnn, Activation::Identity, true),
    ] {
        let m = f32_model(cell, act, tie);
        let (_dir, path) = tmp(&format!("{cell:?}{act:?}{tie}"));
        let meta = HashMap::from([("rnnscope.vocab".to_string(), "[\"a\",\"b\"]".to_string())]);
        checkpoint::save(&m, &path, &meta).unwrap();
        let back = checkpoint::load::<f32>(&path).unwrap();
        assert_eq!(back.model.config, m.config);
        assert_eq!(
            back.model.params(),
            m.params(),
            "parameters survive bit for bit"
        );
        assert_eq!(back.metadata["rnnscope.vocab"], "[\"a\",\"b\"]");
        assert_eq!(logits(&back.model), logits(&m));
        // PyTorch's state dict of a tied model lists decoder.weight too: it must be in the file.
        let f = TensorFile::open(&path).unwrap();
        assert!(f.tensors.contains_key("decoder.weight"));
        // No temp file is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .collect();
        assert!(leftovers.is_empty());
    }
}

#[test]
fn pytorch_state_dict_loads_with_inferred_config() {
    // The fixtures were written by PyTorch (safetensors.torch) with state-dict names and no
    // rnnscope metadata: the config is inferred from the shapes.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference/fixtures");
    for (case, cell, tie) in [
        ("gru", CellKind::Gru, false),
        ("lstm_tied", CellKind::Lstm, true),
        ("rnn_relu", CellKind::Rnn, false),
    ] {
        let f = TensorFile::open(&dir.join(format!("{case}.safetensors"))).unwrap();
        let c = f.model_config().unwrap();
        assert_eq!(
            (c.cell, c.layers, c.hidden, c.vocab, c.tie),
            (cell, 2, 11, 13, tie)
        );
        if case == "rnn_relu" {
            assert_eq!(c.activation, Activation::Relu);
        }
        let mut m = LanguageModel::<f32>::zeros(c).unwrap();
        f.load_params(&mut m, false).unwrap();
        let w = f.get("rnn.weight_hh_l1").unwrap();
        let ours = m.layout.view(m.params(), "rnn.weight_hh_l1").unwrap();
        assert!(ours.iter().zip(&w.data).all(|(a, b)| *a as f64 == *b));
        // Strict loading refuses the fixtures' extra tensors, naming one.
        let err = f.load_params(&mut m, true).unwrap_err().to_string();
        assert!(err.contains("unexpected tensor `"), "{err}");
    }
}

#[test]
fn wrong_shape_missing_tensor_and_truncation_are_refused_by_name() {
    let m = f32_model(CellKind::Lstm, Activation::Tanh, false);
    let (_dir, path) = tmp("refusals");
    checkpoint::save(&m, &path, &HashMap::new()).unwrap();
    let good = TensorFile::open(&path).unwrap();
    let meta = good.metadata.clone();
    let as_f32 = |t: &checkpoint::Tensor| t.data.iter().map(|&v| v as f32).collect::<Vec<_>>();

    // Missing tensor.
    let missing: checkpoint::NamedTensors = good
        .tensors
        .iter()
        .filter(|(n, _)| n.as_str() != "rnn.bias_hh_l1")
        .map(|(n, t)| (n.clone(), t.shape.clone(), as_f32(t)))
        .collect();
    write_tensors(&path, &missing, &meta).unwrap();
    let err = checkpoint::load::<f32>(&path).err().unwrap().to_string();
    assert!(err.contains("`rnn.bias_hh_l1` is missing"), "{err}");

    // Wrong shape.
    let wrong: checkpoint::NamedTensors = good
        .tensors
        .iter()
        .map(|(n, t)| {
            if n == "decoder.weight" {
                (n.clone(), vec![t.shape[1], t.shape[0]], as_f32(t))
            } else {
                (n.clone(), t.shape.clone(), as_f32(t))
            }
        })
        .collect();
    write_tensors(&path, &wrong, &meta).unwrap();
    let err = checkpoint::load::<f32>(&path).err().unwrap().to_string();
    assert!(
        err.contains("`decoder.weight` has shape [3, 5], expected [5, 3]"),
        "{err}"
    );

    // Truncated file.
    checkpoint::save(&m, &path, &HashMap::new()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = checkpoint::load::<f32>(&path).err().unwrap().to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");
    assert!(
        err.contains("model.safetensors"),
        "the error names the file: {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Models as PyTorch users save them (reference/make_fixtures.py, `make_pytorch_model_fixtures`)
// ---------------------------------------------------------------------------------------------

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference/fixtures")
}

/// Runs the built binary; returns (success, stdout, stderr).
fn rnnscope(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rnnscope"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// PyTorch's numbers for the models: `<m>.loss` tensors and `<m>.prime`/`<m>.greedy` metadata.
fn pytorch_data() -> TensorFile {
    TensorFile::open(&fixtures().join("pytorch_models_data.safetensors")).unwrap()
}

/// `rnnscope eval --json` in one pass from a zero state (as the fixture's PyTorch loss).
fn eval_json(ckpt: &str, vocab: &str, corpus: &std::path::Path) -> serde_json::Value {
    let (ckpt, vocab) = (fixtures().join(ckpt), fixtures().join(vocab));
    let (ok, out, err) = rnnscope(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--vocab-file",
        vocab.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--batch",
        "1",
        "--bptt",
        "1000",
        "--json",
    ]);
    assert!(ok, "eval failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// `rnnscope sample` at temperature 0 (greedy): PyTorch's greedy continuation, exactly.
fn greedy_sample(ckpt: &str, vocab: &str, prime: &str, length: usize) -> String {
    let (ckpt, vocab) = (fixtures().join(ckpt), fixtures().join(vocab));
    let (ok, out, err) = rnnscope(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--vocab-file",
        vocab.to_str().unwrap(),
        "--prime",
        prime,
        "--length",
        &length.to_string(),
        "--temperature",
        "0",
    ]);
    assert!(ok, "sample failed: {err}");
    out
}

#[test]
fn word_language_model_state_dict_evaluates_and_samples_as_in_pytorch() {
    // encoder.weight / rnn.* / decoder.*: PyTorch's examples/word_language_model names, with its
    // dictionary as a one-word-per-line file in which <unk> is not token 0.
    let data = pytorch_data();
    let r = eval_json(
        "wlm_lstm.safetensors",
        "wlm_vocab.txt",
        &fixtures().join("wlm_eval.txt"),
    );
    let want = data.get("wlm.loss").unwrap().data[0];
    let loss = r["loss"].as_f64().unwrap();
    assert!(
        ((loss - want) / want).abs() <= 1e-4,
        "loss {loss} vs PyTorch {want}"
    );
    assert_eq!(r["unknown"], 1, "`fish` is read as <unk>");
    assert_eq!(r["tokenizer"], "word");
    let out = greedy_sample("wlm_lstm.safetensors", "wlm_vocab.txt", "the dog", 12);
    assert_eq!(out, format!("{}\n", data.metadata["wlm.greedy"]));

    let (_out_dir, g) = gradflow_on_the_held_out_text("wlm_lstm.safetensors");
    let input = &g["summary"]["input"];
    assert_eq!(
        (&input["kind"], &input["tokenizer"], &input["unknown"]),
        (&"text".into(), &"word".into(), &1.into()),
        "{input}"
    );
    assert_eq!(
        input["source"],
        fixtures().join("wlm_eval.txt").display().to_string()
    );
}

/// `gradflow --text` on the word-model fixtures' held-out text, read through their vocabulary
/// file: 14 words and 2 <eos>, cut into 2 windows of 5 steps (each with its next-word
/// targets). Returns the output folder (removed when dropped) and its `gradflow.json`.
fn gradflow_on_the_held_out_text(checkpoint: &str) -> (TempDir, serde_json::Value) {
    let out_dir = TempDir::new(&format!("gf-{checkpoint}"));
    let (ckpt, vocab, text) = (
        fixtures().join(checkpoint),
        fixtures().join("wlm_vocab.txt"),
        fixtures().join("wlm_eval.txt"),
    );
    let (ok, _, err) = rnnscope(&[
        "gradflow",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--vocab-file",
        vocab.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--bptt",
        "5",
        "--batch",
        "2",
        "--out",
        out_dir.0.to_str().unwrap(),
    ]);
    assert!(ok, "gradflow failed: {err}");
    let g: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("gradflow.json")).unwrap()).unwrap();
    (out_dir, g)
}

/// word_language_model's RNNModel with `nn.LSTM(8, 10, 2, proj_size=6)` and its decoder
/// `nn.Linear(6, V)`, as PyTorch saves its state dict (`rnn.weight_hr_l{k}` [6, 10],
/// `rnn.weight_hh_l{k}` [40, 6]): loads as a projected LSTM, `eval` gives PyTorch's loss, greedy
/// `sample` PyTorch's continuation, and `gradflow --text` runs on it (6-dimensional `dJ/dh`,
/// spectra of the `[P, P]` maps `W_hr W_gate`).
#[test]
fn projected_lstm_state_dict_evaluates_samples_and_analyses() {
    let data = TensorFile::open(&fixtures().join("wlm_proj_data.safetensors")).unwrap();
    let ck = checkpoint::load::<f32>(&fixtures().join("wlm_lstm_proj.safetensors")).unwrap();
    let c = &ck.model.config;
    assert_eq!(
        (c.cell, c.hidden, c.proj_size, c.layers, c.embedding, c.tie),
        (CellKind::Lstm, 10, 6, 2, 8, false)
    );
    let r = eval_json(
        "wlm_lstm_proj.safetensors",
        "wlm_vocab.txt",
        &fixtures().join("wlm_eval.txt"),
    );
    let want = data.get("proj.loss").unwrap().data[0];
    let loss = r["loss"].as_f64().unwrap();
    assert!(
        ((loss - want) / want).abs() <= 1e-4,
        "loss {loss} vs PyTorch {want}"
    );
    let out = greedy_sample(
        "wlm_lstm_proj.safetensors",
        "wlm_vocab.txt",
        &data.metadata["proj.prime"],
        12,
    );
    // The continuation ends at an <eos>: its newline ends the output.
    assert!(data.metadata["proj.greedy"].ends_with('\n'));
    assert_eq!(out, data.metadata["proj.greedy"]);

    let (out_dir, g) = gradflow_on_the_held_out_text("wlm_lstm_proj.safetensors");
    assert_eq!(g["summary"]["input"]["kind"], "text");
    for layer in g["spectrum"].as_array().unwrap() {
        for gate in layer["gates"].as_array().unwrap() {
            assert_eq!(gate["singular_values"].as_array().unwrap().len(), 6);
        }
    }
    let top = &g["profiles"][1]["hidden"][0];
    assert!(top["mean"].as_f64().unwrap() > 0.0, "{top}");
    assert_eq!(g["summary"]["proj_size"], 6);
    // The report names the spectra as what they are, and states no vanilla-RNN rule.
    let r = rnnscope::report::build(&out_dir.0).unwrap();
    let captions: Vec<&str> = r.figures().iter().map(|f| f.caption.as_str()).collect();
    let spectra: Vec<&&str> = captions
        .iter()
        .filter(|c| c.contains("of W_hr times each gate block of the recurrent weight ([P, P]"))
        .collect();
    assert_eq!(
        spectra.len(),
        4,
        "eigenvalues and singular values of 2 layers: {captions:?}"
    );
    assert!(
        captions.iter().all(|c| !c.contains("guarantees")),
        "{captions:?}"
    );
    let html = std::fs::read_to_string(
        rnnscope::report::write(&out_dir.0, &Default::default())
            .unwrap()
            .html,
    )
    .unwrap();
    assert!(
        html.contains("Eigenvalues of W_hr W_hh, layer 1"),
        "no spectrum title"
    );
}

#[test]
fn bare_lstm_state_dict_reads_one_hot_characters_and_emits_logits() {
    // weight_ih_l0, ... with no module prefix and no embedding or decoder; the vocabulary is a
    // JSON list of characters without <unk>.
    let data = pytorch_data();
    let text = std::env::temp_dir().join(format!("rnnscope-bare-{}.txt", std::process::id()));
    std::fs::write(&text, &data.metadata["bare.eval"]).unwrap();
    let r = eval_json("bare_lstm.safetensors", "bare_vocab.json", &text);
    let want = data.get("bare.loss").unwrap().data[0];
    let loss = r["loss"].as_f64().unwrap();
    assert!(
        ((loss - want) / want).abs() <= 1e-4,
        "loss {loss} vs PyTorch {want}"
    );
    assert_eq!(r["tokenizer"], "char");
    let out = greedy_sample("bare_lstm.safetensors", "bare_vocab.json", "the ", 20);
    assert_eq!(out, format!("{}\n", data.metadata["bare.greedy"]));

    // A character the vocabulary lacks, with no <unk> to stand for it: one line naming it.
    std::fs::write(&text, "the cat saw a zebra\n").unwrap();
    let bare = fixtures().join("bare_lstm.safetensors");
    let vocab = fixtures().join("bare_vocab.json");
    let (ok, _, err) = rnnscope(&[
        "eval",
        "--checkpoint",
        bare.to_str().unwrap(),
        "--vocab-file",
        vocab.to_str().unwrap(),
        "--corpus",
        text.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(text.to_str().unwrap())
            && err.contains("character 'z' is not in the vocabulary, which has no <unk>"),
        "{err}"
    );
    // Without a vocabulary the model cannot read text: the error says what to give.
    let (ok, _, err) = rnnscope(&["sample", "--checkpoint", bare.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bare_lstm.safetensors") && err.contains("--vocab-file FILE"),
        "{err}"
    );
    std::fs::remove_file(&text).unwrap();
}

#[test]
fn a_torch_save_file_is_refused_with_the_conversion_command() {
    let pt = fixtures().join("bare_lstm.pt");
    let (ok, _, err) = rnnscope(&[
        "eval",
        "--checkpoint",
        pt.to_str().unwrap(),
        "--corpus",
        pt.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let p = pt.display().to_string();
    let q = fixtures()
        .join("bare_lstm.safetensors")
        .display()
        .to_string();
    assert!(
        err.contains(&format!("{p}: a PyTorch pickle (torch.save), not safetensors"))
            && err.contains(&format!("st.save_file({{k: v.contiguous().clone() for k, v in torch.load('{p}', map_location='cpu').items()}}, '{q}')")),
        "{err}"
    );
}

/// `tensors` (renamed by `rename`, dropped when it gives `None`) written without metadata, as
/// `safetensors.torch.save_file` writes a state dict, then loaded.
fn renamed_state_dict(
    from: &TensorFile,
    name: &str,
    rename: impl Fn(&str) -> Option<String>,
) -> rnnscope::Result<checkpoint::Checkpoint<f32>> {
    let tensors: checkpoint::NamedTensors = from
        .tensors
        .iter()
        .filter_map(|(n, t)| {
            let v = t.data.iter().map(|&x| x as f32).collect();
            rename(n).map(|n| (n, t.shape.clone(), v))
        })
        .collect();
    let (_dir, path) = tmp(name);
    write_tensors(&path, &tensors, &HashMap::new()).unwrap();
    checkpoint::load::<f32>(&path)
}

#[test]
fn any_module_names_load_by_structure_and_unsupported_layouts_are_refused_by_name() {
    let wlm = TensorFile::open(&fixtures().join("wlm_lstm.safetensors")).unwrap();
    let reference = checkpoint::load::<f32>(&wlm.path).unwrap().model;
    // embed / lstm / fc: the modules are found by their shapes.
    let custom = renamed_state_dict(&wlm, "custom", |n| {
        Some(
            n.replace("encoder.", "embed.")
                .replace("rnn.", "lstm.")
                .replace("decoder.", "fc."),
        )
    })
    .unwrap()
    .model;
    assert_eq!(custom.config, reference.config);
    assert_eq!(custom.params(), reference.params());
    assert_eq!(logits(&custom), logits(&reference));
    // The same with a projection: the decoder is found by its P = 6 columns.
    let proj = TensorFile::open(&fixtures().join("wlm_lstm_proj.safetensors")).unwrap();
    let reference = checkpoint::load::<f32>(&proj.path).unwrap().model;
    let custom = renamed_state_dict(&proj, "custom_proj", |n| {
        Some(
            n.replace("encoder.", "embed.")
                .replace("rnn.", "lstm.")
                .replace("decoder.", "fc."),
        )
    })
    .unwrap()
    .model;
    assert_eq!(custom.config, reference.config);
    assert_eq!(custom.config.proj_size, 6);
    assert_eq!(custom.params(), reference.params());
    assert_eq!(logits(&custom), logits(&reference));
    // A decoder without bias (nn.Linear(bias=False)) reads as bias 0.
    let no_bias = renamed_state_dict(&wlm, "nobias", |n| {
        (n != "decoder.bias").then(|| n.to_string())
    })
    .unwrap()
    .model;
    let b = no_bias
        .layout
        .view(no_bias.params(), "decoder.bias")
        .unwrap();
    assert!(b.iter().all(|&x| x == 0.0));

    let refused = |name: &str, rename: &dyn Fn(&str) -> Option<String>| {
        renamed_state_dict(&wlm, name, rename)
            .err()
            .unwrap()
            .to_string()
    };
    // A projection `weight_hr_l1` in place of layer 1's `weight_hh_l1` (no layer 0 projection,
    // so not nn.LSTM(proj_size=P)): the tensor the model needs is named.
    let err = refused("proj", &|n| {
        Some(n.replace("rnn.weight_hh_l1", "rnn.weight_hr_l1"))
    });
    assert!(
        err.contains("proj/model.safetensors: tensor `rnn.weight_hh_l1` is missing"),
        "{err}"
    );
    let err = refused("bidir", &|n| {
        Some(n.replace("rnn.bias_hh_l1", "rnn.bias_hh_l0_reverse"))
    });
    assert!(
        err.contains(
            "tensor `rnn.bias_hh_l0_reverse`: bidirectional recurrent layers are not supported"
        ),
        "{err}"
    );
    let err = refused("two", &|n| {
        Some(n.replace("rnn.weight_ih_l1", "rnn2.weight_ih_l0"))
    });
    assert!(
        err.contains("several recurrent modules (`rnn.weight_ih_l0`, `rnn2.weight_ih_l0`)"),
        "{err}"
    );
    let err = refused("none", &|n| (!n.starts_with("rnn.")).then(|| n.to_string()));
    assert!(
        err.contains("no recurrent layer: expected a tensor named `rnn.weight_ih_l0`"),
        "{err}"
    );
    // Only the recurrent layers, but input 8 and output 10: neither one-hot nor logits fit.
    let err = refused("bare", &|n| n.strip_prefix("rnn.").map(str::to_string));
    assert!(
        err.contains("no decoder: the top layer's output would be the logits, which needs its size (10) to equal the vocabulary size (8"),
        "{err}"
    );
    assert!(
        err.contains("model.safetensors"),
        "the error names the file: {err}"
    );
}
