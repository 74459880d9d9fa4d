//! App benchmarks (plain program, like `benches/benches/store.rs`; see docs/benchmarks.md):
//!
//! 1. **Survey frame**: the 認定調査票 screen with all 74 items (plus 自立度) answered and a
//!    few 特記事項, on a 1280×800 screen: egui layout (`Context::run_ui`) plus tessellation
//!    into triangles, per frame. The GPU/llvmpipe raster step is not included.
//! 2. **Launch to unlock screen**: the real `musubi` binary under Xvfb (glow, Mesa
//!    software rendering) from spawn until it logs that the first frame of the unlock
//!    screen was drawn; skipped when `Xvfb` is not installed (`scripts/setup.sh gui`).
//!
//! `MUSUBI_BENCH_FRAMES` (default 300) sets the number of timed frames.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command as Proc, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musubi_app::ui::{AppUi, Screen, WorkerConfig, command::Command, fonts};
use musubi_engine::Engine;
use musubi_engine::store::{InitOptions, SecretString, Store};

const PASS: &str = "bench passphrase";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn raw_input(t: f64) -> egui::RawInput {
    egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1280.0, 800.0),
        )),
        time: Some(t),
        ..Default::default()
    }
}

fn survey_frames(frames: usize) -> (Vec<Duration>, Vec<Duration>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = Store::init(
        &dir,
        &SecretString::from(PASS.to_owned()),
        InitOptions {
            office: "1370100016".to_owned(),
            device_name: "bench".to_owned(),
            staff: None,
            recovery_recipient: None,
            kdf_work_factor: Some(10),
        },
    )
    .unwrap();
    let engine = Engine::new(store, None).unwrap();
    let example: serde_json::Value =
        serde_json::from_str(include_str!("../../schemas/examples/survey.json")).unwrap();
    let id = engine
        .import(&[("example".to_owned(), example)], 1)
        .unwrap()
        .ids[0];
    engine.close().unwrap();

    let ctx = egui::Context::default();
    fonts::install(&ctx);
    let mut app = AppUi::new(
        WorkerConfig {
            data_dir: dir,
            staff: None,
            background_sync: false,
            relay: None,
            card: Default::default(),
            trust_anchors: Vec::new(),
        },
        Arc::new(|| {}),
    )
    .unwrap();
    app.send(Command::Unlock {
        passphrase: SecretString::from(PASS.to_owned()),
    });
    assert!(app.wait_idle(Duration::from_secs(60)));
    app.go(Screen::Survey(id));
    assert!(app.wait_idle(Duration::from_secs(60)));
    // Warm up: font atlas, galley caches.
    let mut t = 0.0;
    for _ in 0..20 {
        let mut out = ctx.run_ui(raw_input(t), |ui| app.ui(ui));
        out.textures_delta.clear();
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
        t += 1.0 / 60.0;
    }
    let mut layout = Vec::with_capacity(frames);
    let mut total = Vec::with_capacity(frames);
    for _ in 0..frames {
        let start = Instant::now();
        let mut out = ctx.run_ui(raw_input(t), |ui| app.ui(ui));
        let laid = start.elapsed();
        out.textures_delta.clear();
        let prims = ctx.tessellate(out.shapes, out.pixels_per_point);
        std::hint::black_box(&prims);
        total.push(start.elapsed());
        layout.push(laid);
        t += 1.0 / 60.0;
    }
    layout.sort();
    total.sort();
    (layout, total)
}

fn launch_to_unlock(runs: usize) -> Option<Vec<Duration>> {
    let have_xvfb = Proc::new("sh")
        .args(["-c", "command -v Xvfb"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_xvfb {
        return None;
    }
    let display = ":96";
    let mut xvfb = Proc::new("Xvfb")
        .args([display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Wait until the X server answers.
    for _ in 0..100 {
        let ok = Proc::new("xdpyinfo")
            .args(["-display", display])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let mut child = Proc::new(env!("CARGO_BIN_EXE_musubi"))
            .env("DISPLAY", display)
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .env("MUSUBI_LOG", "musubi_app=info")
            .env("MUSUBI_DATA_DIR", tmp.path().join("none"))
            .env_remove("MUSUBI_PASSPHRASE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut seen = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("first frame drawn") {
                seen = true;
                break;
            }
        }
        let elapsed = start.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        if seen {
            times.push(elapsed);
        } else {
            eprintln!("launch: the app did not report its first frame");
        }
    }
    let _ = xvfb.kill();
    let _ = xvfb.wait();
    times.sort();
    Some(times)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let frames: usize = std::env::var("MUSUBI_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    eprintln!("app bench: survey frames ({frames})…");
    let (layout, total) = survey_frames(frames);
    println!("## App benchmark\n");
    println!("| Measure | p50 | p95 | max | Target |");
    println!("|---|---|---|---|---|");
    println!(
        "| Survey frame, layout only (74 items, 1280×800) | {} | {} | {} | |",
        ms(percentile(&layout, 0.5)),
        ms(percentile(&layout, 0.95)),
        ms(*layout.last().unwrap())
    );
    println!(
        "| Survey frame, layout + tessellation | {} | {} | {} | < 16 ms |",
        ms(percentile(&total, 0.5)),
        ms(percentile(&total, 0.95)),
        ms(*total.last().unwrap())
    );
    eprintln!("app bench: launch to unlock screen…");
    match launch_to_unlock(5) {
        Some(t) if !t.is_empty() => println!(
            "| Launch to unlock screen (real window, Xvfb + llvmpipe, {} runs) | {} | {} | {} | < 1 s |",
            t.len(),
            ms(percentile(&t, 0.5)),
            ms(percentile(&t, 0.95)),
            ms(*t.last().unwrap())
        ),
        _ => println!(
            "| Launch to unlock screen | skipped: no Xvfb (scripts/setup.sh gui) | | | < 1 s |"
        ),
    }
}
