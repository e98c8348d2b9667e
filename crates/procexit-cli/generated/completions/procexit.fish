# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_procexit_global_optspecs
    string join \n h/help V/version
end

function __fish_procexit_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_procexit_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_procexit_using_subcommand
    set -l cmd (__fish_procexit_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c procexit -n "__fish_procexit_needs_command" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_needs_command" -s V -l version -d 'Print version'
complete -c procexit -n "__fish_procexit_needs_command" -f -a "watch" -d 'Print every process exit as it happens (Ctrl-C stops and prints a summary)'
complete -c procexit -n "__fish_procexit_needs_command" -f -a "wait" -d 'Wait until the given processes end (any process, not only children)'
complete -c procexit -n "__fish_procexit_needs_command" -f -a "replay" -d 'Print the process exits recorded in Windows .etl trace files (on any OS)'
complete -c procexit -n "__fish_procexit_needs_command" -f -a "service" -d 'Run watch as a Windows service: install, uninstall, start, stop'
complete -c procexit -n "__fish_procexit_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c procexit -n "__fish_procexit_needs_command" -f -a "man" -d 'Print a man page (roff): procexit(1), or procexit-COMMAND(1)'
complete -c procexit -n "__fish_procexit_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l name -d 'Only processes whose name matches this glob (`*`, `?`); repeatable' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l pid -d 'Only this pid; repeatable' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l ppid -d 'Only children of this pid; repeatable' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l duration -d 'Only processes that lived at least this long (e.g. 250ms, 2s, 1m)' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l cgroup -d 'Linux: only processes whose cgroup path matches this glob (`*` also matches `/`), e.g. \'/system.slice/docker-*\'; repeatable' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l source -d 'Linux: the source of exits (auto: eBPF when permitted, else the connector)' -r -f -a "auto\t'eBPF when permitted (root, or CAP_BPF + CAP_PERFMON), else the connector'
ebpf\t'The eBPF source (fails with the reason when not permitted)'
connector\t'The netlink process connector (any user on kernels 6.6 and later)'"
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l count -d 'Stop after printing N exits' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l socket-buffer -d 'Linux: the netlink receive buffer to ask for, in bytes (default 8 MiB, which the kernel doubles). Smaller buffers lose exits in bursts' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l session-name -d 'Windows: the ETW session\'s name; it must start with "procexit". One watch per name runs at a time (ignored on other OSes)' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l output -d 'Append JSON Lines to FILE (created mode 0640 if missing; reopened on SIGHUP). Stdout then stays quiet unless --json is given' -r -F
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l rotate-size -d 'Rotate FILE before it grows past SIZE (bytes, or with k, M, G: 1024-based): FILE becomes FILE.1, FILE.1 becomes FILE.2, …' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l rotate-keep -d 'Rotated files to keep (FILE.1 … FILE.N); older ones are deleted' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l journald-namespace -d 'Send to this journal namespace instead of the default journal (systemd LogNamespace=, journalctl --namespace); implies --journald' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l syslog -d 'Send every record to a syslog server as an RFC 5424 message whose MSG is the JSON record: unix:PATH (datagram), udp:HOST:PORT or tcp:HOST:PORT (octet-counted framing). Repeatable' -r
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l failed -d 'Only failures: non-zero exit code or killed by a signal'
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l strict -d 'Exit with status 3 at the end if any exit was lost, dropped or overrun, so that a script can trust a clean run (status 0)'
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l json -d 'Print JSON Lines (one object per exit, flushed per line) instead of a table'
complete -c procexit -n "__fish_procexit_using_subcommand watch" -l journald -d 'Send every record to the systemd journal as a structured entry: MESSAGE, PRIORITY (4 for failures and losses, else 6) and one PROCEXIT_KEY field per JSON key (PROCEXIT_PID, …) (Linux)'
complete -c procexit -n "__fish_procexit_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c procexit -n "__fish_procexit_using_subcommand wait" -l timeout -d 'Give up after this long (e.g. 30s, 5m) and exit with status 124' -r
complete -c procexit -n "__fish_procexit_using_subcommand wait" -l json -d 'Print JSON Lines (one object per exit, flushed per line) instead of a table'
complete -c procexit -n "__fish_procexit_using_subcommand wait" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_using_subcommand replay" -l name -d 'Only processes whose name matches this glob (`*`, `?`); repeatable' -r
complete -c procexit -n "__fish_procexit_using_subcommand replay" -l pid -d 'Only this pid; repeatable' -r
complete -c procexit -n "__fish_procexit_using_subcommand replay" -l ppid -d 'Only children of this pid; repeatable' -r
complete -c procexit -n "__fish_procexit_using_subcommand replay" -l duration -d 'Only processes that lived at least this long (e.g. 250ms, 2s, 1m)' -r
complete -c procexit -n "__fish_procexit_using_subcommand replay" -l cgroup -d 'Linux: only processes whose cgroup path matches this glob (`*` also matches `/`), e.g. \'/system.slice/docker-*\'; repeatable' -r
complete -c procexit -n "__fish_procexit_using_subcommand replay" -l count -d 'Stop after printing N exits' -r
complete -c procexit -n "__fish_procexit_using_subcommand replay" -l all -d 'Also list process starts and rundowns (processes alive when the trace started or ended), not only exits'
complete -c procexit -n "__fish_procexit_using_subcommand replay" -l failed -d 'Only failures: non-zero exit code or killed by a signal'
complete -c procexit -n "__fish_procexit_using_subcommand replay" -l json -d 'Print JSON Lines (one object per exit, flushed per line) instead of a table'
complete -c procexit -n "__fish_procexit_using_subcommand replay" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "install" -d 'Register the service to run `watch` with the options that follow'
complete -c procexit -n "__fish_procexit_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "uninstall" -d 'Stop (if running) and remove the service'
complete -c procexit -n "__fish_procexit_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "start" -d 'Start the service and wait until it runs'
complete -c procexit -n "__fish_procexit_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "stop" -d 'Stop the service and wait until it stopped'
complete -c procexit -n "__fish_procexit_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "run" -d 'What the service manager runs (not for use from a console)'
complete -c procexit -n "__fish_procexit_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from install" -l name -d 'Service name (several can be installed under different names)' -r
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l name -d 'Service name' -r
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from start" -l name -d 'Service name' -r
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from stop" -l name -d 'Service name' -r
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from run" -l name -r
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "install" -d 'Register the service to run `watch` with the options that follow'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "uninstall" -d 'Stop (if running) and remove the service'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start the service and wait until it runs'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Stop the service and wait until it stopped'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "run" -d 'What the service manager runs (not for use from a console)'
complete -c procexit -n "__fish_procexit_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c procexit -n "__fish_procexit_using_subcommand completions" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_using_subcommand man" -s h -l help -d 'Print help'
complete -c procexit -n "__fish_procexit_using_subcommand help; and not __fish_seen_subcommand_from watch wait replay service completions man help" -f -a "watch" -d 'Print every process exit as it happens (Ctrl-C stops and prints a summary)'
complete -c procexit -n "__fish_procexit_using_subcommand help; and not __fish_seen_subcommand_from watch wait replay service completions man help" -f -a "wait" -d 'Wait until the given processes end (any process, not only children)'
complete -c procexit -n "__fish_procexit_using_subcommand help; and not __fish_seen_subcommand_from watch wait replay service completions man help" -f -a "replay" -d 'Print the process exits recorded in Windows .etl trace files (on any OS)'
complete -c procexit -n "__fish_procexit_using_subcommand help; and not __fish_seen_subcommand_from watch wait replay service completions man help" -f -a "service" -d 'Run watch as a Windows service: install, uninstall, start, stop'
complete -c procexit -n "__fish_procexit_using_subcommand help; and not __fish_seen_subcommand_from watch wait replay service completions man help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c procexit -n "__fish_procexit_using_subcommand help; and not __fish_seen_subcommand_from watch wait replay service completions man help" -f -a "man" -d 'Print a man page (roff): procexit(1), or procexit-COMMAND(1)'
complete -c procexit -n "__fish_procexit_using_subcommand help; and not __fish_seen_subcommand_from watch wait replay service completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c procexit -n "__fish_procexit_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "install" -d 'Register the service to run `watch` with the options that follow'
complete -c procexit -n "__fish_procexit_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "uninstall" -d 'Stop (if running) and remove the service'
complete -c procexit -n "__fish_procexit_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "start" -d 'Start the service and wait until it runs'
complete -c procexit -n "__fish_procexit_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "stop" -d 'Stop the service and wait until it stopped'
complete -c procexit -n "__fish_procexit_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "run" -d 'What the service manager runs (not for use from a console)'
