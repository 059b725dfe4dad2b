//! The demo's report in a real browser: headless Chromium renders `report.html` to a
//! screenshot, which must show the plots (not a blank page), and its DOM must hold every
//! inline SVG and no image that could be broken (the report references no files at all).
//!
//! Skipped with a notice when no Chromium is installed, unless `RNNSCOPE_REQUIRE_BROWSER=1`
//! (set by `.ci/run`, which installs Debian's `chromium`). `RNNSCOPE_CHROMIUM` names the
//! binary if it is not `chromium`, `chromium-browser` or `google-chrome` on the PATH. The same
//! command, for users:
//!
//! ```text
//! chromium --headless --no-sandbox --disable-gpu --screenshot=report.png \
//!     --window-size=1280,2000 file://$PWD/demo_out/report.html
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rnnscope");
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 2000;

fn find_browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RNNSCOPE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Runs `cmd` with a time limit, killing it when exceeded.
fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    // Read the pipes in threads so a full pipe cannot block the child.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: t_out.join().expect("stdout thread"),
        stderr: t_err.join().expect("stderr thread"),
    }
}

/// Chromium headless with no network access attempts and a throwaway profile.
fn chromium(browser: &Path, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={WIDTH},{HEIGHT}"));
    c
}

#[test]
fn demo_report_renders_in_headless_chromium() {
    let Some(browser) = find_browser() else {
        if std::env::var("RNNSCOPE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!(
                "RNNSCOPE_REQUIRE_BROWSER=1 but no Chromium was found: install it (apt-get install chromium) or set RNNSCOPE_CHROMIUM"
            );
        }
        eprintln!(
            "SKIPPED demo_report_renders_in_headless_chromium: no chromium on the PATH (install Debian's chromium, or set RNNSCOPE_CHROMIUM)"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("rnnscope-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let demo = dir.join("demo");
    let out = run_with_timeout(
        {
            let mut c = Command::new(BIN);
            c.args([
                "demo",
                "--distances",
                "6,10",
                "--steps",
                "300",
                "--threads",
                "1",
                "--out",
            ])
            .arg(&demo);
            c
        },
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = demo.join("report.html");
    let html = std::fs::read_to_string(&report).expect("the demo writes report.html");
    let url = format!("file://{}", report.canonicalize().unwrap().display());

    // The screenshot.
    let shot = dir.join("shot.png");
    let mut c = chromium(&browser, &dir.join("profile-shot"));
    c.arg(format!("--screenshot={}", shot.display())).arg(&url);
    let o = run_with_timeout(c, Duration::from_secs(120));
    assert!(
        shot.exists(),
        "no screenshot ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    let ch = info.color_type.samples();
    let px: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks(ch)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let mut colors = px.clone();
    colors.sort_unstable();
    colors.dedup();
    assert!(
        colors.len() > 100,
        "the page looks blank: {} distinct colours",
        colors.len()
    );
    // The page's two backgrounds (white, light grey) are most of it; text and plots the rest.
    let background = |p: &[u8; 3]| p.iter().all(|&c| c >= 0xF0);
    let ink = px.iter().filter(|p| !background(p)).count() as f64 / px.len() as f64;
    assert!(ink > 0.03, "only {:.1}% of the page is drawn", 100.0 * ink);
    // The plots' data colours are on screen: Okabe-Ito blue (LSTM) and vermillion (RNN).
    let near = |p: &[u8; 3], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 6);
    for (name, c) in [
        ("blue", [0x00, 0x72, 0xB2]),
        ("vermillion", [0xD5, 0x5E, 0x00]),
    ] {
        let n = px.iter().filter(|p| near(p, c)).count();
        assert!(n > 100, "{name} data lines not rendered ({n} pixels)");
    }

    // The DOM: every inline SVG is there, and nothing refers to an image or any other file.
    let mut c = chromium(&browser, &dir.join("profile-dom"));
    c.arg("--dump-dom").arg(&url);
    let o = run_with_timeout(c, Duration::from_secs(120));
    let dom = String::from_utf8_lossy(&o.stdout).to_string();
    let want = html.matches("<svg ").count();
    assert!(want >= 10, "the demo report has {want} plots");
    assert_eq!(
        dom.matches("<svg ").count(),
        want,
        "the browser's DOM lost inline SVGs"
    );
    let lower = dom.to_ascii_lowercase();
    assert_eq!(
        lower.matches("<img").count(),
        0,
        "the report has <img> elements"
    );
    for bad in [" src=", "url(", "<script", "<link"] {
        assert!(!lower.contains(bad), "the rendered page contains `{bad}`");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
