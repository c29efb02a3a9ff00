//! The seccomp filter of slot runtimes.
//!
//! Runtimes are general interpreters (Python, Node), so the filter is a blocklist.
//! It allows every system call except those that administer the kernel, mounts,
//! namespaces, keyrings, tracing or BPF, which fail with `EPERM`. A system call
//! through an ABI the filter was not compiled for kills the process, so the i386
//! entry points cannot bypass it.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// System calls that fail with `EPERM` in every case.
const BLOCKED_SYSCALLS: &[i64] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_ptrace,
    libc::SYS_process_vm_writev,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_userfaultfd,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_fanotify_init,
    // The mount API of Linux 5.2 and later.
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
];

/// Namespace flags that make `clone` fail with `EPERM`. `CLONE_NEWTIME` is missing
/// because `clone` cannot take it: its bit is part of the exit-signal field there.
const NAMESPACE_CLONE_FLAGS: &[i32] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// Programs to install, in order, with [`seccompiler::apply_filter`]. Compile them
/// before forking the runtime so the child only installs them.
pub(crate) fn runtime_filters() -> Result<Vec<BpfProgram>, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|error| format!("no seccomp filter for architecture {}: {error}", std::env::consts::ARCH))?;

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BLOCKED_SYSCALLS.iter().map(|&nr| (nr, Vec::new())).collect();
    let mut clone_rules = Vec::new();
    for &flag in NAMESPACE_CLONE_FLAGS {
        let condition = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag as u64),
            flag as u64,
        )
        .map_err(|error| format!("invalid seccomp condition: {error}"))?;
        clone_rules.push(SeccompRule::new(vec![condition]).map_err(|error| format!("invalid seccomp rule: {error}"))?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let blocklist = compile(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;

    // clone3 passes its flags in memory, which seccomp cannot read. ENOSYS makes
    // glibc (2.34 and later) fall back to clone, which the blocklist inspects.
    let clone3 = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
    let clone3 = compile(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;

    let mut programs = vec![blocklist, clone3];
    if arch == TargetArch::x86_64 {
        programs.push(x32_guard());
    }
    Ok(programs)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch_action: SeccompAction,
    match_action: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(rules, mismatch_action, match_action, arch)
        .map_err(|error| format!("invalid seccomp filter: {error}"))?;
    BpfProgram::try_from(filter).map_err(|error| format!("failed to compile seccomp filter: {error}"))
}

/// Rejects x32 system calls with `ENOSYS`. They carry the x86-64 audit arch with bit
/// 30 set in the number, so a blocklist keyed on x86-64 numbers would miss them.
fn x32_guard() -> BpfProgram {
    const LOAD_WORD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JUMP_IF_GREATER_OR_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const SYSCALL_NUMBER_OFFSET: u32 = 0;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    vec![
        sock_filter {
            code: LOAD_WORD,
            jt: 0,
            jf: 0,
            k: SYSCALL_NUMBER_OFFSET,
        },
        sock_filter {
            code: JUMP_IF_GREATER_OR_EQUAL,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: RETURN,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        sock_filter {
            code: RETURN,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ]
}

/// Returns whether the kernel supports seccomp filters.
pub(crate) fn available() -> bool {
    std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile() {
        let programs = runtime_filters().unwrap();
        assert!(programs.len() >= 2);
        assert!(programs
            .iter()
            .all(|program| !program.is_empty() && program.len() < 4096));
    }
}
