//! The fuzz targets' bodies: one function per decoder of untrusted or
//! kernel bytes. Each must return normally for every input; a panic or an
//! assertion failure is a bug.
//!
//! The libFuzzer binaries in `fuzz_targets/` call these, and so does the
//! workspace test `crates/procexit/tests/fuzz_smoke.rs`, which replays seeds
//! and random inputs through them on the stable toolchain (CI's smoke run).

use procexit::etl::{EtlFile, ProcessEvents};
use procexit::unstable::decode::{
    audit_api, ebpf_exit, kernel_process, lost_event, mof_process, netlink, proc_connector,
};
use procexit::unstable::decode::{taskstats, PointerSize};
use procexit::unstable::xpress;

/// A target: any bytes in, returns normally.
pub type Target = fn(&[u8]);

/// Every target, by name (the libFuzzer binary and seed folder names).
pub const ALL: [(&str, Target); 10] = [
    ("etl_file", etl_file),
    ("xpress", xpress),
    ("mof_process", mof_process),
    ("kernel_process", kernel_process),
    ("audit_api", audit_api),
    ("proc_connector", proc_connector),
    ("taskstats", taskstats),
    ("lost_event", lost_event),
    ("ebpf_exit", ebpf_exit),
    ("bpf_object", bpf_object),
];

/// The `.etl` reader over arbitrary bytes: raw events, then process items.
pub fn etl_file(data: &[u8]) {
    if let Ok(mut file) = EtlFile::new(data) {
        let _ = file.header().filetime(i64::MAX);
        let mut n = 0usize;
        loop {
            match file.next_event() {
                Ok(Some(ev)) => {
                    assert!(ev.payload.len() <= data.len().max(1 << 20));
                    let _ = ev.time();
                }
                Ok(None) => break,
                Err(e) => assert!(e.offset <= data.len() as u64),
            }
            n += 1;
            // Progress: a buffer takes at least 72 input bytes and holds at
            // most 1 MiB of records of at least 8 bytes each.
            let bound = (data.len() / 72 + 1) * ((1 << 20) / 8 + 2);
            assert!(n <= bound, "reader does not advance");
        }
    }
    if let Ok(file) = EtlFile::new(data) {
        for item in ProcessEvents::new(file).take(1 << 22) {
            let _ = item;
        }
    }
}

/// The LZ77 Xpress decompressor: the first two bytes choose the output size.
pub fn xpress(data: &[u8]) {
    let (cap, input) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => return,
    };
    let mut out = vec![0u8; cap];
    if let Ok(n) = xpress::decompress(input, &mut out) {
        assert!(n <= cap);
    }
}

/// The kernel Process (MOF) payload: byte 0 is the version, bit 0 of byte 1
/// the pointer size, the rest the payload.
pub fn mof_process(data: &[u8]) {
    let [version, width, payload @ ..] = data else {
        return;
    };
    let pointer = if width & 1 == 0 {
        PointerSize::Four
    } else {
        PointerSize::Eight
    };
    if let Ok(p) = mof_process::decode_process(payload, *version, pointer) {
        let _ = p.is_fully_decoded();
    }
}

/// Microsoft-Windows-Kernel-Process ProcessStart/ProcessStop payloads:
/// byte 0 is the version, bit 0 of byte 1 picks start or stop.
pub fn kernel_process(data: &[u8]) {
    let [version, which, payload @ ..] = data else {
        return;
    };
    if which & 1 == 0 {
        let _ = kernel_process::decode_process_start(payload, *version);
    } else if let Ok(stop) = kernel_process::decode_process_stop(payload, *version) {
        // The image name is the payload's bytes, one char per byte.
        if let Some(name) = stop.image_name {
            assert!(name.chars().count() <= payload.len());
        }
    }
}

/// Microsoft-Windows-Kernel-Audit-API-Calls TerminateProcess payloads:
/// byte 0 is the version.
pub fn audit_api(data: &[u8]) {
    let [version, payload @ ..] = data else {
        return;
    };
    if let Ok(t) = audit_api::decode_terminate_process(payload, *version) {
        // A decoded event had its fields' bytes: 8, and 24 from v1 on.
        let need = if *version >= 1 { 24 } else { 8 };
        assert!(payload.len() >= need);
        assert_eq!(t.target_start_key.is_some(), *version >= 1);
    } else {
        assert!(payload.len() < 24);
    }
}

/// A process connector datagram as the kernel would send it: the netlink
/// framing and every message in it.
pub fn proc_connector(data: &[u8]) {
    let mut last = 0usize;
    for message in netlink::messages(data) {
        match message {
            Ok((_, message, at)) => {
                assert!(at >= last && at.saturating_add(message.len()) <= data.len());
                last = at;
                let _ = netlink::parse_error(message);
                let _ = proc_connector::parse_message(message);
            }
            Err(e) => assert!(e.offset <= data.len()),
        }
    }
    for event in proc_connector::parse_datagram(data).take(1 << 16) {
        if let Err(e) = event {
            assert!(e.offset <= data.len());
        }
    }
}

/// A taskstats (generic netlink) message: the exit record, the attribute
/// walker and the family-id reply.
pub fn taskstats(data: &[u8]) {
    if let Ok(Some(exit)) = taskstats::parse_message(data) {
        let _ = exit;
    }
    let _ = taskstats::parse_family_id(data);
    // The walker stops after its first error.
    for (_, payload) in taskstats::attributes(data).take(1 << 16).flatten() {
        assert!(payload.len() <= data.len());
    }
}

/// `Lost_Event` notifications carry no payload: the decoder is the opcode.
/// Every byte is one opcode; only 32, 33 and 34 are losses.
pub fn lost_event(data: &[u8]) {
    for &opcode in data {
        let kind = lost_event::classify_lost(opcode);
        assert_eq!(kind.is_some(), (32..=34).contains(&opcode));
    }
}

/// The Linux eBPF source's ring-buffer record (what the BPF program writes;
/// the reader hands over each sample as it comes). Fields stay within their
/// bounds, bytes after the record change nothing, and the cgroup path goes
/// on to the container-id parser as procexit passes it.
pub fn ebpf_exit(data: &[u8]) {
    match ebpf_exit::EbpfExit::parse(data) {
        Ok(exit) => {
            let size = ebpf_exit::RECORD_MIN + exit.args.len();
            assert!(data.len() >= size);
            assert!(exit.args.len() <= ebpf_exit::ARGS_MAX);
            assert!(exit.cgroup.len() <= ebpf_exit::CGROUP_FIELD);
            assert!(exit.comm.len() <= 16 * 3 && exit.killer_comm.len() <= 16 * 3);
            let exact = data.get(..size).unwrap_or(data);
            assert_eq!(ebpf_exit::EbpfExit::parse(exact).as_ref(), Ok(&exit));
            if let Ok(path) = std::str::from_utf8(exit.cgroup) {
                if let Some(id) = procexit::cgroup::container_id(path) {
                    assert!(!id.is_empty() && id.len() <= path.len());
                }
            }
        }
        Err(e) => assert!(e.offset <= data.len()),
    }
}

/// The BPF loader (ELF, BTF, BTF.ext, CO-RE relocation) over arbitrary
/// bytes: as an object relocated against its own `.BTF`, and as a kernel
/// BTF the committed object is relocated against. Only Linux has the
/// loader.
pub fn bpf_object(data: &[u8]) {
    #[cfg(target_os = "linux")]
    {
        use procexit::unstable::bpf;
        if let Some(btf) = bpf::object_btf(data) {
            let _ = bpf::relocate(data, btf);
        }
        let _ = bpf::relocate(bpf::object(), data);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = data;
}
