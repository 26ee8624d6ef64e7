//! Keeping functions away from link-local addresses.
//!
//! A cloud's metadata service (169.254.169.254, `fd00:ec2::254`) hands out the
//! host's credentials to whoever asks from the host, so a function on the
//! host's network must not reach it. Nimbus attaches four tiny cgroup-BPF
//! programs (`connect4`, `connect6`, `sendmsg4`, `sendmsg6`, the hooks systemd's
//! `IPAddressDeny=` uses) to a cgroup-v2 group holding every instance: a
//! connect or a datagram to `169.254.0.0/16`, `fe80::/10`, their IPv4-mapped
//! forms or `fd00:ec2::254` fails with `EPERM` inside the kernel, whatever the
//! function does. Loading them needs root and a cgroup-v2 hierarchy (pure v2,
//! or the `unified` mount of a hybrid host); elsewhere `nimbus up` names the
//! guarantee as lost. The programs are written out here instruction by
//! instruction (eleven and twenty-odd instructions) rather than compiled with
//! a BPF toolchain, which the build does not otherwise need.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
// 32-bit compares (BPF_JMP32): a 64-bit compare would sign-extend the
// immediate, and 0xffff0000 would never match a zero-extended word.
const JEQ_K: u8 = 0x16; // BPF_JMP32 | BPF_JEQ | BPF_K
const JNE_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const EXIT: u8 = 0x95;

/// `struct bpf_sock_addr` offsets: `user_ip4` and `user_ip6[0..4]` (network
/// byte order, so a little-endian load sees the first octet lowest).
const USER_IP4: i16 = 4;
const USER_IP6: i16 = 8;

/// IPv4: allow unless the first two octets are 169.254.
fn v4_program() -> Vec<Insn> {
    vec![
        ins(LDX_W, 2, 1, USER_IP4, 0),
        ins(AND_K, 2, 0, 0, 0xffff),
        ins(JEQ_K, 2, 0, 2, 0xfea9),
        ins(MOV_K, 0, 0, 0, 1),
        ins(EXIT, 0, 0, 0, 0),
        ins(MOV_K, 0, 0, 0, 0),
        ins(EXIT, 0, 0, 0, 0),
    ]
}

/// IPv6: deny fe80::/10, ::ffff:169.254.0.0/112 and fd00:ec2::254.
fn v6_program() -> Vec<Insn> {
    // Jump offsets count instructions after the jump; DENY is the last pair.
    let mut p = vec![
        // fe80::/10: first word & 0xc0ff == 0x80fe
        ins(LDX_W, 2, 1, USER_IP6, 0), // 0
        ins(AND_K, 2, 0, 0, 0xc0ff),   // 1
        ins(JEQ_K, 2, 0, 0, 0x80fe),   // 2 -> DENY (patched)
        // ::ffff:169.254.x.x
        ins(LDX_W, 2, 1, USER_IP6, 0),      // 3
        ins(JNE_K, 2, 0, 0, 0),             // 4 -> METADATA6 (patched)
        ins(LDX_W, 2, 1, USER_IP6 + 4, 0),  // 5
        ins(JNE_K, 2, 0, 0, 0),             // 6 -> METADATA6
        ins(LDX_W, 2, 1, USER_IP6 + 8, 0),  // 7
        ins(JNE_K, 2, 0, 0, -65536),        // 8 -> METADATA6 (0xffff0000)
        ins(LDX_W, 2, 1, USER_IP6 + 12, 0), // 9
        ins(AND_K, 2, 0, 0, 0xffff),        // 10
        ins(JEQ_K, 2, 0, 0, 0xfea9),        // 11 -> DENY
        // METADATA6: fd00:ec2::254
        ins(LDX_W, 2, 1, USER_IP6, 0),              // 12
        ins(JNE_K, 2, 0, 0, 0xc20e00fd_u32 as i32), // 13 -> ALLOW
        ins(LDX_W, 2, 1, USER_IP6 + 4, 0),          // 14
        ins(JNE_K, 2, 0, 0, 0),                     // 15 -> ALLOW
        ins(LDX_W, 2, 1, USER_IP6 + 8, 0),          // 16
        ins(JNE_K, 2, 0, 0, 0),                     // 17 -> ALLOW
        ins(LDX_W, 2, 1, USER_IP6 + 12, 0),         // 18
        ins(JEQ_K, 2, 0, 0, 0x54020000),            // 19 -> DENY
        // ALLOW
        ins(MOV_K, 0, 0, 0, 1), // 20
        ins(EXIT, 0, 0, 0, 0),  // 21
        // DENY
        ins(MOV_K, 0, 0, 0, 0), // 22
        ins(EXIT, 0, 0, 0, 0),  // 23
    ];
    let (metadata, allow, deny) = (12i16, 20i16, 22i16);
    for (at, to) in [
        (2, deny),
        (4, metadata),
        (6, metadata),
        (8, metadata),
        (11, deny),
        (13, allow),
        (15, allow),
        (17, allow),
        (19, deny),
    ] {
        p[at as usize].off = to - at - 1;
    }
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const BPF_CGROUP_INET4_CONNECT: u32 = 10;
const BPF_CGROUP_INET6_CONNECT: u32 = 11;
const BPF_CGROUP_UDP4_SENDMSG: u32 = 14;
const BPF_CGROUP_UDP6_SENDMSG: u32 = 15;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<i32> {
    // SAFETY: bpf(2) reads a zero-padded attribute buffer of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as i32)
}

fn load(program: &[Insn], attach_type: u32) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_SOCK_ADDR.to_ne_bytes());
    attr[4..8].copy_from_slice(&(program.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(program.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..54].copy_from_slice(b"nimbus");
    attr[68..72].copy_from_slice(&attach_type.to_ne_bytes());
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: bpf(BPF_PROG_LOAD) returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn attach(group: &File, program: &OwnedFd, attach_type: u32) -> io::Result<()> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(group.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(program.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&attach_type.to_ne_bytes());
    bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

/// The cgroup-v2 group every instance joins, with the filter attached.
#[derive(Debug)]
pub struct LinkLocalFilter {
    dir: PathBuf,
    /// Created here (a hybrid host's unified hierarchy), so removed at the end.
    ours: bool,
}

impl LinkLocalFilter {
    /// Attaches the programs to `group` (an existing cgroup-v2 directory that
    /// will hold every instance), or creates `<unified>/<tag>` on a hybrid host.
    pub fn install(v2_group: Option<&Path>, tag: &str) -> io::Result<Self> {
        let (dir, ours) = match v2_group {
            Some(g) => (g.to_path_buf(), false),
            None => {
                let unified = Path::new("/sys/fs/cgroup/unified");
                if !unified.join("cgroup.procs").exists() {
                    return Err(io::Error::other("no cgroup v2 hierarchy"));
                }
                let dir = unified.join(tag);
                fs::create_dir_all(&dir)?;
                (dir, true)
            }
        };
        let group = File::open(&dir)?;
        for (program, attach_type) in [
            (v4_program(), BPF_CGROUP_INET4_CONNECT),
            (v4_program(), BPF_CGROUP_UDP4_SENDMSG),
            (v6_program(), BPF_CGROUP_INET6_CONNECT),
            (v6_program(), BPF_CGROUP_UDP6_SENDMSG),
        ] {
            let fd = load(&program, attach_type)
                .map_err(|e| io::Error::other(format!("loading the BPF filter: {e}")))?;
            attach(&group, &fd, attach_type)
                .map_err(|e| io::Error::other(format!("attaching the BPF filter: {e}")))?;
        }
        Ok(Self { dir, ours })
    }

    /// The `cgroup.procs` an instance writes its pid into (only when the group
    /// was made for the filter; on a pure v2 host instances are already below it).
    pub fn procs(&self) -> Option<PathBuf> {
        self.ours.then(|| self.dir.join("cgroup.procs"))
    }

    /// Removes the group made for the filter (at shutdown, once it is empty).
    pub fn remove(&self) {
        if self.ours {
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the v6 program's jumps on an address, as the kernel would.
    fn run(p: &[Insn], words: [u32; 4]) -> i32 {
        let (mut pc, mut r2, mut r0) = (0usize, 0u64, 0u64);
        loop {
            let i = p[pc];
            let dst = i.regs & 0xf;
            match i.code {
                LDX_W if i.off == USER_IP4 => r2 = words[0] as u64,
                LDX_W => r2 = words[((i.off - USER_IP6) / 4) as usize] as u64,
                AND_K => r2 &= i.imm as u32 as u64,
                JEQ_K if r2 as u32 == i.imm as u32 => pc = (pc as i16 + i.off) as usize,
                JNE_K if r2 as u32 != i.imm as u32 => pc = (pc as i16 + i.off) as usize,
                JEQ_K | JNE_K => {}
                MOV_K if dst == 0 => r0 = i.imm as u64,
                EXIT => return r0 as i32,
                _ => panic!("unexpected instruction"),
            }
            pc += 1;
        }
    }

    fn words(a: std::net::Ipv6Addr) -> [u32; 4] {
        let o = a.octets();
        std::array::from_fn(|i| u32::from_le_bytes(o[i * 4..i * 4 + 4].try_into().unwrap()))
    }

    #[test]
    fn the_v4_program_denies_169_254_only() {
        let p = v4_program();
        let word = |a: std::net::Ipv4Addr| [u32::from_le_bytes(a.octets()), 0, 0, 0];
        for (addr, verdict) in [
            ("169.254.169.254", 0),
            ("169.254.0.1", 0),
            ("127.0.0.1", 1),
            ("169.253.1.1", 1),
            ("10.169.254.1", 1),
        ] {
            assert_eq!(run(&p, word(addr.parse().unwrap())), verdict, "{addr}");
        }
    }

    #[test]
    fn the_v6_program_denies_link_local_and_metadata_only() {
        let p = v6_program();
        for denied in [
            "fe80::1",
            "febf::1",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
        ] {
            assert_eq!(run(&p, words(denied.parse().unwrap())), 0, "{denied}");
        }
        for allowed in [
            "::1",
            "2001:db8::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "fd00:ec2::253",
            "::ffff:169.253.1.1",
        ] {
            assert_eq!(run(&p, words(allowed.parse().unwrap())), 1, "{allowed}");
        }
    }
}
