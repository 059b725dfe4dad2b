//! Checkpoint round trips and refusals.

mod common;

use common::*;
use rnnscope::checkpoint::{self, write_tensors, TensorFile};
use rnnscope::{Activation, CellKind, LanguageModel, State, Workspace};
use std::collections::HashMap;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rnnscope-ckpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("model.safetensors")
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
        let path = tmp(&format!("{cell:?}{act:?}{tie}"));
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
    let path = tmp("refusals");
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
