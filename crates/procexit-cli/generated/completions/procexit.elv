
use builtin;
use str;

set edit:completion:arg-completer[procexit] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'procexit'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'procexit'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand watch 'Print every process exit as it happens (Ctrl-C stops and prints a summary)'
            cand wait 'Wait until the given processes end (any process, not only children)'
            cand replay 'Print the process exits recorded in Windows .etl trace files (on any OS)'
            cand service 'Run watch as a Windows service: install, uninstall, start, stop'
            cand completions 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
            cand man 'Print a man page (roff): procexit(1), or procexit-COMMAND(1)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'procexit;watch'= {
            cand --name 'Only processes whose name matches this glob (`*`, `?`); repeatable'
            cand --pid 'Only this pid; repeatable'
            cand --ppid 'Only children of this pid; repeatable'
            cand --duration 'Only processes that lived at least this long (e.g. 250ms, 2s, 1m)'
            cand --cgroup 'Linux: only processes whose cgroup path matches this glob (`*` also matches `/`), e.g. ''/system.slice/docker-*''; repeatable'
            cand --source 'Linux: the source of exits (auto: eBPF when permitted, else the connector)'
            cand --count 'Stop after printing N exits'
            cand --socket-buffer 'Linux: the netlink receive buffer to ask for, in bytes (default 8 MiB, which the kernel doubles). Smaller buffers lose exits in bursts'
            cand --session-name 'Windows: the ETW session''s name; it must start with "procexit". One watch per name runs at a time (ignored on other OSes)'
            cand --output 'Append JSON Lines to FILE (created mode 0640 if missing; reopened on SIGHUP). Stdout then stays quiet unless --json is given'
            cand --rotate-size 'Rotate FILE before it grows past SIZE (bytes, or with k, M, G: 1024-based): FILE becomes FILE.1, FILE.1 becomes FILE.2, …'
            cand --rotate-keep 'Rotated files to keep (FILE.1 … FILE.N); older ones are deleted'
            cand --journald-namespace 'Send to this journal namespace instead of the default journal (systemd LogNamespace=, journalctl --namespace); implies --journald'
            cand --syslog 'Send every record to a syslog server as an RFC 5424 message whose MSG is the JSON record: unix:PATH (datagram), udp:HOST:PORT or tcp:HOST:PORT (octet-counted framing). Repeatable'
            cand --failed 'Only failures: non-zero exit code or killed by a signal'
            cand --strict 'Exit with status 3 at the end if any exit was lost, dropped or overrun, so that a script can trust a clean run (status 0)'
            cand --json 'Print JSON Lines (one object per exit, flushed per line) instead of a table'
            cand --journald 'Send every record to the systemd journal as a structured entry: MESSAGE, PRIORITY (4 for failures and losses, else 6) and one PROCEXIT_KEY field per JSON key (PROCEXIT_PID, …) (Linux)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'procexit;wait'= {
            cand --timeout 'Give up after this long (e.g. 30s, 5m) and exit with status 124'
            cand --json 'Print JSON Lines (one object per exit, flushed per line) instead of a table'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'procexit;replay'= {
            cand --name 'Only processes whose name matches this glob (`*`, `?`); repeatable'
            cand --pid 'Only this pid; repeatable'
            cand --ppid 'Only children of this pid; repeatable'
            cand --duration 'Only processes that lived at least this long (e.g. 250ms, 2s, 1m)'
            cand --cgroup 'Linux: only processes whose cgroup path matches this glob (`*` also matches `/`), e.g. ''/system.slice/docker-*''; repeatable'
            cand --count 'Stop after printing N exits'
            cand --all 'Also list process starts and rundowns (processes alive when the trace started or ended), not only exits'
            cand --failed 'Only failures: non-zero exit code or killed by a signal'
            cand --json 'Print JSON Lines (one object per exit, flushed per line) instead of a table'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'procexit;service'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand install 'Register the service to run `watch` with the options that follow'
            cand uninstall 'Stop (if running) and remove the service'
            cand start 'Start the service and wait until it runs'
            cand stop 'Stop the service and wait until it stopped'
            cand run 'What the service manager runs (not for use from a console)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'procexit;service;install'= {
            cand --name 'Service name (several can be installed under different names)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'procexit;service;uninstall'= {
            cand --name 'Service name'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'procexit;service;start'= {
            cand --name 'Service name'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'procexit;service;stop'= {
            cand --name 'Service name'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'procexit;service;run'= {
            cand --name 'name'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'procexit;service;help'= {
            cand install 'Register the service to run `watch` with the options that follow'
            cand uninstall 'Stop (if running) and remove the service'
            cand start 'Start the service and wait until it runs'
            cand stop 'Stop the service and wait until it stopped'
            cand run 'What the service manager runs (not for use from a console)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'procexit;service;help;install'= {
        }
        &'procexit;service;help;uninstall'= {
        }
        &'procexit;service;help;start'= {
        }
        &'procexit;service;help;stop'= {
        }
        &'procexit;service;help;run'= {
        }
        &'procexit;service;help;help'= {
        }
        &'procexit;completions'= {
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'procexit;man'= {
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'procexit;help'= {
            cand watch 'Print every process exit as it happens (Ctrl-C stops and prints a summary)'
            cand wait 'Wait until the given processes end (any process, not only children)'
            cand replay 'Print the process exits recorded in Windows .etl trace files (on any OS)'
            cand service 'Run watch as a Windows service: install, uninstall, start, stop'
            cand completions 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
            cand man 'Print a man page (roff): procexit(1), or procexit-COMMAND(1)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'procexit;help;watch'= {
        }
        &'procexit;help;wait'= {
        }
        &'procexit;help;replay'= {
        }
        &'procexit;help;service'= {
            cand install 'Register the service to run `watch` with the options that follow'
            cand uninstall 'Stop (if running) and remove the service'
            cand start 'Start the service and wait until it runs'
            cand stop 'Stop the service and wait until it stopped'
            cand run 'What the service manager runs (not for use from a console)'
        }
        &'procexit;help;service;install'= {
        }
        &'procexit;help;service;uninstall'= {
        }
        &'procexit;help;service;start'= {
        }
        &'procexit;help;service;stop'= {
        }
        &'procexit;help;service;run'= {
        }
        &'procexit;help;completions'= {
        }
        &'procexit;help;man'= {
        }
        &'procexit;help;help'= {
        }
    ]
    $completions[$command]
}
