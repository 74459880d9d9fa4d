//! `musubi-vcard`: attaches a virtual My Number card (test data only) to pcscd through
//! vsmartcard's vpcd driver. It connects as a TCP client to vpcd (default
//! 127.0.0.1:35963 = reader "Virtual PCD 00 00"); closing the connection is a card removal.
//!
//! On first start it creates its test PKI in `--dir` (including `trust-anchor.pem`, the
//! test root, for `musubi card verify --trust-anchor`). PIN counters are kept in
//! `--dir/state.json` across runs, like the card's non-volatile memory.

#![allow(clippy::print_stderr)]

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use musubi_vcard::card::{Corrupt, Counters, VirtualCard};
use musubi_vcard::{CertChoice, Holder, build, pki::TestPki};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "musubi-vcard",
    version,
    about = "Virtual My Number card for tests (vpcd client). Test PKI and dummy data only."
)]
struct Args {
    /// vpcd address (reader slot 0 is port 35963, slot 1 is 35964).
    #[arg(long, default_value = "127.0.0.1:35963", value_name = "HOST:PORT")]
    vpcd: String,
    /// Directory for the test PKI, the trust anchor and the PIN counters.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// 利用者証明用暗証番号 of the card.
    #[arg(long, default_value = "1234")]
    pin: String,
    /// 券面事項入力補助用暗証番号 of the card.
    #[arg(long, default_value = "1234")]
    support_pin: String,
    /// The dummy My Number held in 入力補助AP EF 0001 (12 digits).
    #[arg(long, default_value = "123456789018")]
    my_number: String,
    /// 氏名 in the basic four items.
    #[arg(long, default_value = "結城　花子")]
    name: String,
    /// 住所 in the basic four items.
    #[arg(long, default_value = "東京都千代田区架空町１－２－３")]
    address: String,
    /// 生年月日 (YYYY-MM-DD).
    #[arg(long, default_value = "1944-05-12")]
    birth_date: String,
    /// 性別 code (1, 2 or 9).
    #[arg(long, default_value = "2")]
    sex: String,
    /// Append every APDU received (VERIFY data masked) and power event to FILE.
    #[arg(long, value_name = "FILE")]
    apdu_log: Option<PathBuf>,
    /// Which authentication certificate the card carries.
    #[arg(long, value_enum, default_value_t = CertArg::Valid)]
    cert: CertArg,
    /// Simulate a corrupt card response.
    #[arg(long, value_enum, default_value_t = CorruptArg::None)]
    corrupt: CorruptArg,
    /// Simulate removal: drop the connection when the Nth APDU arrives (unanswered).
    #[arg(long, value_name = "N")]
    remove_after_apdus: Option<usize>,
    /// Set the tries left on the authentication PIN (0 = locked) before starting.
    #[arg(long, value_name = "N")]
    auth_tries: Option<u8>,
    /// Set the tries left on the 入力補助 PIN before starting.
    #[arg(long, value_name = "N")]
    support_tries: Option<u8>,
    /// Only create the test PKI in DIR (if missing) and exit, without connecting to vpcd.
    #[arg(long)]
    init_only: bool,
    /// Seconds to keep retrying the connection to vpcd.
    #[arg(long, default_value_t = 20)]
    connect_timeout: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CertArg {
    Valid,
    Expired,
    Foreign,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CorruptArg {
    None,
    Cert,
    Signature,
    Short,
    Status,
    Basic4,
}

fn load_counters(path: &Path) -> Counters {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_counters(path: &Path, c: &Counters) -> Result<()> {
    musubi_engine::fsutil::write_durably(path, &serde_json::to_vec(c)?)?;
    Ok(())
}

fn read_frame(s: &mut TcpStream) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(Some(buf))
}

fn write_frame(s: &mut TcpStream, data: &[u8]) -> Result<()> {
    let len = u16::try_from(data.len()).context("response longer than a vpcd frame")?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(data);
    s.write_all(&out)?;
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MUSUBI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let pki = TestPki::load_or_create(&args.dir)?;
    if args.init_only {
        eprintln!(
            "musubi-vcard: test PKI ready in {} (trust anchor: {})",
            args.dir.display(),
            args.dir
                .join(musubi_vcard::pki::TRUST_ANCHOR_FILE)
                .display()
        );
        return Ok(());
    }
    let holder = Holder {
        pin: args.pin.clone(),
        support_pin: args.support_pin.clone(),
        my_number: args.my_number.clone(),
        name: args.name.clone(),
        address: args.address.clone(),
        birth_date: args.birth_date.clone(),
        sex: args.sex.clone(),
    };
    let cert = match args.cert {
        CertArg::Valid => CertChoice::Valid,
        CertArg::Expired => CertChoice::Expired,
        CertArg::Foreign => CertChoice::Foreign,
    };
    let corrupt = match args.corrupt {
        CorruptArg::None => Corrupt::None,
        CorruptArg::Cert => Corrupt::Cert,
        CorruptArg::Signature => Corrupt::Signature,
        CorruptArg::Short => Corrupt::Short,
        CorruptArg::Status => Corrupt::Status,
        CorruptArg::Basic4 => Corrupt::Basic4,
    };
    let content = build(&pki, &holder, cert)?;
    let state_path = args.dir.join("state.json");
    let mut counters = load_counters(&state_path);
    if let Some(n) = args.auth_tries {
        counters.auth = n.min(3);
    }
    if let Some(n) = args.support_tries {
        counters.support = n.min(3);
    }
    save_counters(&state_path, &counters)?;
    let mut card = VirtualCard::new(content, counters, corrupt);

    let mut log = match &args.apdu_log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening the APDU log {}", p.display()))?,
        ),
        None => None,
    };

    let deadline = Instant::now() + Duration::from_secs(args.connect_timeout);
    let mut stream = loop {
        match TcpStream::connect(&args.vpcd) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("vpcd not reachable yet: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => bail!("cannot connect to vpcd at {}: {e}", args.vpcd),
        }
    };
    stream.set_nodelay(true)?;
    eprintln!(
        "musubi-vcard: card inserted (connected to vpcd at {})",
        args.vpcd
    );

    let mut apdus = 0usize;
    while let Some(msg) = read_frame(&mut stream)? {
        if msg.len() == 1 {
            match msg[0] {
                0x00 => card.power_event("off"),
                0x01 => card.power_event("on"),
                0x02 => card.power_event("reset"),
                0x04 => write_frame(&mut stream, &VirtualCard::atr())?,
                other => tracing::warn!("unknown vpcd control byte {other:02X}"),
            }
        } else {
            apdus += 1;
            if args.remove_after_apdus.is_some_and(|n| apdus >= n) {
                card.log.push("removed".to_owned());
                flush_log(&mut card, log.as_mut())?;
                eprintln!("musubi-vcard: card removed (simulated, at APDU {apdus})");
                return Ok(());
            }
            let resp = card.process(&msg);
            write_frame(&mut stream, &resp)?;
        }
        if card.counters != counters {
            counters = card.counters;
            save_counters(&state_path, &counters)?;
        }
        flush_log(&mut card, log.as_mut())?;
    }
    eprintln!("musubi-vcard: vpcd closed the connection");
    Ok(())
}

fn flush_log(card: &mut VirtualCard, log: Option<&mut std::fs::File>) -> Result<()> {
    let lines = std::mem::take(&mut card.log);
    if let Some(f) = log {
        for l in lines {
            // Power events of pcscd's presence polling are not logged (0x04 is not one).
            writeln!(f, "{l}")?;
        }
        f.flush()?;
    }
    Ok(())
}
