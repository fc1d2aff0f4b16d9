//! The TPM code against a real TPM 2.0 implementation: swtpm (libtpms) on a Unix socket.
//!
//! swtpm's socket server speaks the same raw TPM 2.0 commands the kernel's `/dev/tpmrm0`
//! passes through, so this checks our marshalling and parsing against the reference
//! implementation the VM tier also boots with, in a second instead of a boot.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cfs_setup_root::tpm::{self, HashAlg, Transport};

mod common;

struct Swtpm {
    child: Child,
    dir: PathBuf,
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts swtpm with a fresh state (TPM2_Startup done by swtpm itself); None when swtpm
/// is not installed (the test command installs it).
fn start(name: &str) -> Option<(Swtpm, Socket)> {
    let dir = std::env::temp_dir().join(format!("cfs-swtpm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let sock = dir.join("tpm.sock");
    let child = match Command::new("swtpm")
        .arg("socket")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(format!("dir={}", dir.join("state").display()))
        .arg("--server")
        .arg(format!("type=unixio,path={}", sock.display()))
        .arg("--ctrl")
        .arg(format!(
            "type=unixio,path={}",
            dir.join("ctrl.sock").display()
        ))
        .args(["--flags", "not-need-init,startup-clear"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            common::skip(name, "swtpm is not installed (apt-get install swtpm)");
            return None;
        }
        Err(e) => panic!("swtpm: {e}"),
    };
    let guard = Swtpm { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(stream) = UnixStream::connect(&sock) {
            return Some((guard, Socket { stream, path: sock }));
        }
        assert!(
            Instant::now() < deadline,
            "swtpm did not listen on {sock:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// swtpm's data socket: a command in, a response (header-sized) out.
struct Socket {
    stream: UnixStream,
    path: PathBuf,
}

impl Transport for Socket {
    fn transact(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        self.stream.write_all(command)?;
        let mut resp = vec![0; 10];
        self.stream.read_exact(&mut resp)?;
        let size = u32::from_be_bytes([resp[2], resp[3], resp[4], resp[5]]) as usize;
        resp.resize(size.max(10), 0);
        self.stream.read_exact(&mut resp[10..])?;
        Ok(resp)
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

/// `TPM2_PCR_Read` of PCR `pcr` in each of `algs` (TPM 2.0 Library, Part 3): the values in
/// the TPM's order. Only this test reads PCRs; the boot path only extends.
fn pcr_read(tpm: &mut dyn Transport, pcr: u32, algs: &[HashAlg]) -> Vec<tpm::BankDigest> {
    let mut body = Vec::new();
    body.extend(u32::try_from(algs.len()).unwrap().to_be_bytes());
    for alg in algs {
        let mut select = [0u8; 3];
        select[(pcr / 8) as usize] = 1 << (pcr % 8);
        body.extend(alg.0.to_be_bytes());
        body.push(3);
        body.extend(select);
    }
    let mut command = vec![0x80, 0x01]; // TPM_ST_NO_SESSIONS
    command.extend(u32::try_from(10 + body.len()).unwrap().to_be_bytes());
    command.extend(0x0000_017E_u32.to_be_bytes()); // TPM_CC_PCR_Read
    command.extend(body);
    let resp = tpm.transact(&command).unwrap();
    let mut at = 10;
    let mut take = |n: usize| {
        let bytes = resp[at..at + n].to_vec();
        at += n;
        bytes
    };
    let u32_of = |b: Vec<u8>| u32::from_be_bytes(b.try_into().unwrap());
    assert_eq!(u32_of(resp[6..10].to_vec()), 0, "TPM2_PCR_Read failed");
    let _update_counter = take(4);
    let mut banks = Vec::new();
    for _ in 0..u32_of(take(4)) {
        let alg = take(2);
        let size = take(1)[0] as usize;
        take(size);
        banks.push(HashAlg(u16::from_be_bytes([alg[0], alg[1]])));
    }
    assert_eq!(u32_of(take(4)) as usize, banks.len());
    banks
        .into_iter()
        .map(|alg| {
            let size = take(2);
            let digest = take(u16::from_be_bytes([size[0], size[1]]) as usize);
            tpm::BankDigest { alg, digest }
        })
        .collect()
}

const HEX: &str = "4f5e3c1b2a09876543210fedcba98765432100112233445566778899aabbccdd";

#[test]
fn swtpm_pcr15_and_event_log() {
    let Some((swtpm, mut sock)) = start("swtpm_pcr15_and_event_log") else {
        return;
    };
    let banks = tpm::pcr_banks(&mut sock).unwrap();
    let active: Vec<HashAlg> = banks.iter().filter(|b| b.has(15)).map(|b| b.alg).collect();
    eprintln!("swtpm banks with PCR 15: {active:?}");
    assert!(active.contains(&HashAlg::SHA256), "{banks:?}");
    let before = pcr_read(&mut sock, 15, &active);

    let event = format!("composefs:{HEX}");
    let log = swtpm.dir.join("log/tpm2-measure.log");
    let m = tpm::measure_and_log_with(&mut sock, &log, 15, &event).unwrap();
    assert!(m.logged);
    assert_eq!(m.digests.iter().map(|d| d.alg).collect::<Vec<_>>(), active);

    // The PCR is H(old || H(string)) in every bank we can compute.
    let after = pcr_read(&mut sock, 15, &active);
    for (old, new) in before.iter().zip(&after) {
        if let Some(want) = tpm::extended(old.alg, &old.digest, event.as_bytes()) {
            assert_eq!(hex(&new.digest), hex(&want), "{} bank", old.alg);
        } else {
            assert_ne!(new.digest, old.digest, "{} bank not extended", old.alg);
        }
    }
    let sha256 = after.iter().find(|d| d.alg == HashAlg::SHA256).unwrap();
    // From the digest alone, the way the VM test computes it on the host: PCR 15 starts
    // at zero after TPM2_Startup(CLEAR).
    assert_eq!(
        Some(sha256.digest.clone()),
        tpm::extended(HashAlg::SHA256, &[0; 32], event.as_bytes())
    );

    // The log replays to the PCR: one JSON-SEQ record per extend.
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<&str> = text.split('\x1e').filter(|r| !r.is_empty()).collect();
    assert_eq!(records.len(), 1, "{text:?}");
    assert!(records[0].ends_with('\n'));
    let v: serde_json::Value = serde_json::from_str(records[0]).unwrap();
    assert_eq!(v["pcr"], 15);
    assert_eq!(v["content_type"], "systemd");
    assert_eq!(v["content"]["string"], event);
    for d in v["digests"].as_array().unwrap() {
        let alg = d["hashAlg"].as_str().unwrap();
        let old = before.iter().find(|b| b.alg.to_string() == alg).unwrap();
        let new = after.iter().find(|b| b.alg.to_string() == alg).unwrap();
        if let Some(digest) = old.alg.hash(event.as_bytes()) {
            assert_eq!(d["digest"], hex(&digest));
        }
        // Replay: H(old || logged digest) is the PCR now.
        let logged = decode(d["digest"].as_str().unwrap());
        let mut data = old.digest.clone();
        data.extend(logged);
        if let Some(replayed) = old.alg.hash(&data) {
            assert_eq!(hex(&replayed), hex(&new.digest));
        }
    }
    drop(swtpm);
}

#[test]
fn swtpm_refuses_a_pcr_it_lacks() {
    let Some((_swtpm, mut sock)) = start("swtpm_refuses_a_pcr_it_lacks") else {
        return;
    };
    // PCR 30 does not exist: the TPM's answer names the handle.
    let e = tpm::pcr_event(&mut sock, 30, b"x").unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("TPM2_PCR_Event failed: TPM_RC_VALUE (0x184) in handle 1: "),
        "{text}"
    );
    assert!(text.contains("no such PCR"), "{text}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
