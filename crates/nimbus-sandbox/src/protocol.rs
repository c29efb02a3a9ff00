//! Messages between [`crate::NamespaceBackend`] and its init process.
//!
//! Both ends share a `SOCK_SEQPACKET` socketpair, so every message arrives whole and
//! file descriptors travel with it as `SCM_RIGHTS`. The backend sends one
//! [`InitSpec`] and later, only in bare mode, [`KILL_REQUEST`]. The init process
//! sends [`InitMessage`]s. The spec travels over the socket rather than in argv
//! because the runtime environment can contain credentials, and every host user can
//! read a process's command line.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::SlotExit;

/// Descriptor number of the control socket in the init process.
pub(crate) const CONTROL_FD: RawFd = 3;

/// Maximum size of one message. The spec is the largest message.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The only message the backend sends after the spec: end the slot now.
pub(crate) const KILL_REQUEST: &[u8] = b"kill";

/// Isolation that the init process sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InitIsolation {
    /// New mount, network, IPC, UTS and PID namespaces, optionally inside a new user
    /// namespace that maps only the caller's own uid and gid.
    Namespaces { user_namespace: bool },
    /// No namespaces: the runtime shares the host's filesystem and network.
    Bare,
}

/// Everything the init process needs to build and start one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InitSpec {
    pub slot_id: String,
    pub isolation: InitIsolation,
    /// The backend's own uid and gid, mapped to root of the slot's user namespace.
    pub host_uid: u32,
    pub host_gid: u32,
    /// Identity of the runtime. As root these are host ids. Inside a user namespace
    /// they are the ids the runtime has in its own nested user namespace.
    pub runtime_uid: u32,
    pub runtime_gid: u32,
    /// `cgroup.procs` files the init process moves itself into before it forks.
    pub cgroup_procs: Vec<PathBuf>,
    /// Empty host directory that becomes the slot's root (namespace mode only).
    pub root_dir: PathBuf,
    pub code_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub tmp_mb: u32,
    pub hostname: String,
    /// Working directory of the runtime, as a path inside the slot.
    pub working_dir: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Reports of the init process to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InitMessage {
    /// The supervisor process exists. `pid` is its pid in the backend's PID namespace
    /// (namespace PID 1 in namespace mode). A pidfd for it travels along where the
    /// kernel supports `pidfd_open`.
    Started { pid: i32 },
    /// The runtime has been executed. In namespace mode the Runtime API listener
    /// travels along.
    Ready,
    /// Setting up the slot failed; nothing is left running.
    Failed { message: String },
    /// The runtime exited.
    Exited(SlotExit),
}

const TAG_STARTED: u8 = 1;
const TAG_READY: u8 = 2;
const TAG_FAILED: u8 = 3;
const TAG_EXITED_CODE: u8 = 4;
const TAG_EXITED_SIGNAL: u8 = 5;

impl InitMessage {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut encoder = Encoder::default();
        match self {
            InitMessage::Started { pid } => {
                encoder.put_u8(TAG_STARTED);
                encoder.put_u32(*pid as u32);
            }
            InitMessage::Ready => encoder.put_u8(TAG_READY),
            InitMessage::Failed { message } => {
                encoder.put_u8(TAG_FAILED);
                encoder.put_bytes(message.as_bytes());
            }
            InitMessage::Exited(SlotExit::Code(code)) => {
                encoder.put_u8(TAG_EXITED_CODE);
                encoder.put_u32(*code as u32);
            }
            InitMessage::Exited(SlotExit::Signal(signal)) => {
                encoder.put_u8(TAG_EXITED_SIGNAL);
                encoder.put_u32(*signal as u32);
            }
        }
        encoder.bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut decoder = Decoder::new(bytes);
        let message = match decoder.u8()? {
            TAG_STARTED => InitMessage::Started {
                pid: decoder.u32()? as i32,
            },
            TAG_READY => InitMessage::Ready,
            TAG_FAILED => InitMessage::Failed {
                message: decoder.string()?,
            },
            TAG_EXITED_CODE => InitMessage::Exited(SlotExit::Code(decoder.u32()? as i32)),
            TAG_EXITED_SIGNAL => InitMessage::Exited(SlotExit::Signal(decoder.u32()? as i32)),
            tag => return Err(format!("unknown init message tag {tag}")),
        };
        decoder.finish()?;
        Ok(message)
    }
}

impl InitSpec {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut encoder = Encoder::default();
        encoder.put_bytes(self.slot_id.as_bytes());
        match self.isolation {
            InitIsolation::Namespaces { user_namespace: false } => encoder.put_u8(1),
            InitIsolation::Namespaces { user_namespace: true } => encoder.put_u8(2),
            InitIsolation::Bare => encoder.put_u8(3),
        }
        encoder.put_u32(self.host_uid);
        encoder.put_u32(self.host_gid);
        encoder.put_u32(self.runtime_uid);
        encoder.put_u32(self.runtime_gid);
        encoder.put_u32(self.cgroup_procs.len() as u32);
        for path in &self.cgroup_procs {
            encoder.put_path(path);
        }
        encoder.put_path(&self.root_dir);
        encoder.put_path(&self.code_dir);
        encoder.put_path(&self.runtime_dir);
        encoder.put_u32(self.tmp_mb);
        encoder.put_bytes(self.hostname.as_bytes());
        encoder.put_path(&self.working_dir);
        encoder.put_u32(self.argv.len() as u32);
        for arg in &self.argv {
            encoder.put_bytes(arg.as_bytes());
        }
        encoder.put_u32(self.env.len() as u32);
        for (name, value) in &self.env {
            encoder.put_bytes(name.as_bytes());
            encoder.put_bytes(value.as_bytes());
        }
        encoder.bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut decoder = Decoder::new(bytes);
        let slot_id = decoder.string()?;
        let isolation = match decoder.u8()? {
            1 => InitIsolation::Namespaces { user_namespace: false },
            2 => InitIsolation::Namespaces { user_namespace: true },
            3 => InitIsolation::Bare,
            other => return Err(format!("unknown isolation code {other}")),
        };
        let host_uid = decoder.u32()?;
        let host_gid = decoder.u32()?;
        let runtime_uid = decoder.u32()?;
        let runtime_gid = decoder.u32()?;
        let cgroup_count = decoder.u32()?;
        let mut cgroup_procs = Vec::new();
        for _ in 0..cgroup_count {
            cgroup_procs.push(decoder.path()?);
        }
        let root_dir = decoder.path()?;
        let code_dir = decoder.path()?;
        let runtime_dir = decoder.path()?;
        let tmp_mb = decoder.u32()?;
        let hostname = decoder.string()?;
        let working_dir = decoder.path()?;
        let argv_count = decoder.u32()?;
        let mut argv = Vec::new();
        for _ in 0..argv_count {
            argv.push(decoder.string()?);
        }
        let env_count = decoder.u32()?;
        let mut env = Vec::new();
        for _ in 0..env_count {
            let name = decoder.string()?;
            let value = decoder.string()?;
            env.push((name, value));
        }
        decoder.finish()?;
        Ok(InitSpec {
            slot_id,
            isolation,
            host_uid,
            host_gid,
            runtime_uid,
            runtime_gid,
            cgroup_procs,
            root_dir,
            code_dir,
            runtime_dir,
            tmp_mb,
            hostname,
            working_dir,
            argv,
            env,
        })
    }
}

#[derive(Default)]
struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    fn put_u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    fn put_u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn put_bytes(&mut self, value: &[u8]) {
        self.put_u32(value.len() as u32);
        self.bytes.extend_from_slice(value);
    }

    fn put_path(&mut self, path: &std::path::Path) {
        self.put_bytes(path.as_os_str().as_bytes());
    }
}

struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < count {
            return Err(format!(
                "message truncated: expected {count} more bytes, found {}",
                self.bytes.len()
            ));
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let length = self.u32()? as usize;
        self.take(length)
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "message contains invalid UTF-8".to_string())
    }

    fn path(&mut self) -> Result<PathBuf, String> {
        Ok(PathBuf::from(std::ffi::OsString::from_vec(self.bytes()?.to_vec())))
    }

    fn finish(&self) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!("message has {} unexpected trailing bytes", self.bytes.len()))
        }
    }
}

/// Sends one message with `fds` attached. `MSG_NOSIGNAL` turns a closed peer into
/// `EPIPE` instead of a `SIGPIPE`.
pub(crate) fn send_message(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd], flags: MsgFlags) -> nix::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(socket.as_raw_fd(), &iov, cmsgs, flags | MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// One received message: its bytes (empty at end of stream) and attached descriptors.
pub(crate) struct Received {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// Receives one message. Received descriptors are close-on-exec.
pub(crate) fn receive_message(socket: BorrowedFd<'_>, flags: MsgFlags) -> nix::Result<Received> {
    let mut buffer = vec![0u8; MAX_MESSAGE_BYTES];
    let mut control = nix::cmsg_space!([RawFd; 4]);
    let (length, truncated, fds) = {
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            flags | MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds = Vec::new();
        for cmsg in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                for fd in received {
                    // SAFETY: the kernel just installed `fd` in this process for this
                    // message, and nothing else refers to it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        let truncated = message.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        (message.bytes, truncated, fds)
    };
    if truncated {
        return Err(nix::errno::Errno::EMSGSIZE);
    }
    buffer.truncate(length);
    Ok(Received { bytes: buffer, fds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trip() {
        let spec = InitSpec {
            slot_id: "slot-1".to_string(),
            isolation: InitIsolation::Namespaces { user_namespace: true },
            host_uid: 1000,
            host_gid: 1001,
            runtime_uid: 65534,
            runtime_gid: 65533,
            cgroup_procs: vec![PathBuf::from("/sys/fs/cgroup/memory/nimbus/slot-1/cgroup.procs")],
            root_dir: PathBuf::from("/var/lib/nimbus/slot-1/root"),
            code_dir: PathBuf::from("/code"),
            runtime_dir: PathBuf::from("/runtime"),
            tmp_mb: 512,
            hostname: "localhost".to_string(),
            working_dir: PathBuf::from("/var/task"),
            argv: vec!["/bin/sh".to_string(), "-c".to_string(), "echo hi".to_string()],
            env: vec![("A".to_string(), "b=c".to_string())],
        };
        assert_eq!(InitSpec::decode(&spec.encode()).unwrap(), spec);
    }

    #[test]
    fn message_round_trip() {
        let messages = [
            InitMessage::Started { pid: 4242 },
            InitMessage::Ready,
            InitMessage::Failed {
                message: "mount failed".to_string(),
            },
            InitMessage::Exited(SlotExit::Code(3)),
            InitMessage::Exited(SlotExit::Signal(9)),
        ];
        for message in messages {
            assert_eq!(InitMessage::decode(&message.encode()).unwrap(), message);
        }
    }

    #[test]
    fn decode_rejects_truncated_spec() {
        let bytes = InitSpec {
            slot_id: "s".to_string(),
            isolation: InitIsolation::Bare,
            host_uid: 0,
            host_gid: 0,
            runtime_uid: 0,
            runtime_gid: 0,
            cgroup_procs: vec![],
            root_dir: PathBuf::new(),
            code_dir: PathBuf::new(),
            runtime_dir: PathBuf::new(),
            tmp_mb: 1,
            hostname: String::new(),
            working_dir: PathBuf::new(),
            argv: vec![],
            env: vec![],
        }
        .encode();
        assert!(InitSpec::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
