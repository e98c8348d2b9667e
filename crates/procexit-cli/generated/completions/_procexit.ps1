
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'procexit' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'procexit'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'procexit' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('watch', 'watch', [CompletionResultType]::ParameterValue, 'Print every process exit as it happens (Ctrl-C stops and prints a summary)')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait until the given processes end (any process, not only children)')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Print the process exits recorded in Windows .etl trace files (on any OS)')
            [CompletionResult]::new('service', 'service', [CompletionResultType]::ParameterValue, 'Run watch as a Windows service: install, uninstall, start, stop')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script (bash, zsh, fish, elvish, powershell)')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print a man page (roff): procexit(1), or procexit-COMMAND(1)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'procexit;watch' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Only processes whose name matches this glob (`*`, `?`); repeatable')
            [CompletionResult]::new('--pid', '--pid', [CompletionResultType]::ParameterName, 'Only this pid; repeatable')
            [CompletionResult]::new('--ppid', '--ppid', [CompletionResultType]::ParameterName, 'Only children of this pid; repeatable')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Only processes that lived at least this long (e.g. 250ms, 2s, 1m)')
            [CompletionResult]::new('--cgroup', '--cgroup', [CompletionResultType]::ParameterName, 'Linux: only processes whose cgroup path matches this glob (`*` also matches `/`), e.g. ''/system.slice/docker-*''; repeatable')
            [CompletionResult]::new('--source', '--source', [CompletionResultType]::ParameterName, 'Linux: the source of exits (auto: eBPF when permitted, else the connector)')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Stop after printing N exits')
            [CompletionResult]::new('--socket-buffer', '--socket-buffer', [CompletionResultType]::ParameterName, 'Linux: the netlink receive buffer to ask for, in bytes (default 8 MiB, which the kernel doubles). Smaller buffers lose exits in bursts')
            [CompletionResult]::new('--session-name', '--session-name', [CompletionResultType]::ParameterName, 'Windows: the ETW session''s name; it must start with "procexit". One watch per name runs at a time (ignored on other OSes)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Append JSON Lines to FILE (created mode 0640 if missing; reopened on SIGHUP). Stdout then stays quiet unless --json is given')
            [CompletionResult]::new('--rotate-size', '--rotate-size', [CompletionResultType]::ParameterName, 'Rotate FILE before it grows past SIZE (bytes, or with k, M, G: 1024-based): FILE becomes FILE.1, FILE.1 becomes FILE.2, …')
            [CompletionResult]::new('--rotate-keep', '--rotate-keep', [CompletionResultType]::ParameterName, 'Rotated files to keep (FILE.1 … FILE.N); older ones are deleted')
            [CompletionResult]::new('--journald-namespace', '--journald-namespace', [CompletionResultType]::ParameterName, 'Send to this journal namespace instead of the default journal (systemd LogNamespace=, journalctl --namespace); implies --journald')
            [CompletionResult]::new('--syslog', '--syslog', [CompletionResultType]::ParameterName, 'Send every record to a syslog server as an RFC 5424 message whose MSG is the JSON record: unix:PATH (datagram), udp:HOST:PORT or tcp:HOST:PORT (octet-counted framing). Repeatable')
            [CompletionResult]::new('--failed', '--failed', [CompletionResultType]::ParameterName, 'Only failures: non-zero exit code or killed by a signal')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'Exit with status 3 at the end if any exit was lost, dropped or overrun, so that a script can trust a clean run (status 0)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON Lines (one object per exit, flushed per line) instead of a table')
            [CompletionResult]::new('--journald', '--journald', [CompletionResultType]::ParameterName, 'Send every record to the systemd journal as a structured entry: MESSAGE, PRIORITY (4 for failures and losses, else 6) and one PROCEXIT_KEY field per JSON key (PROCEXIT_PID, …) (Linux)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'procexit;wait' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long (e.g. 30s, 5m) and exit with status 124')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON Lines (one object per exit, flushed per line) instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'procexit;replay' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Only processes whose name matches this glob (`*`, `?`); repeatable')
            [CompletionResult]::new('--pid', '--pid', [CompletionResultType]::ParameterName, 'Only this pid; repeatable')
            [CompletionResult]::new('--ppid', '--ppid', [CompletionResultType]::ParameterName, 'Only children of this pid; repeatable')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Only processes that lived at least this long (e.g. 250ms, 2s, 1m)')
            [CompletionResult]::new('--cgroup', '--cgroup', [CompletionResultType]::ParameterName, 'Linux: only processes whose cgroup path matches this glob (`*` also matches `/`), e.g. ''/system.slice/docker-*''; repeatable')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Stop after printing N exits')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Also list process starts and rundowns (processes alive when the trace started or ended), not only exits')
            [CompletionResult]::new('--failed', '--failed', [CompletionResultType]::ParameterName, 'Only failures: non-zero exit code or killed by a signal')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON Lines (one object per exit, flushed per line) instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'procexit;service' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Register the service to run `watch` with the options that follow')
            [CompletionResult]::new('uninstall', 'uninstall', [CompletionResultType]::ParameterValue, 'Stop (if running) and remove the service')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the service and wait until it runs')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop the service and wait until it stopped')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'What the service manager runs (not for use from a console)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'procexit;service;install' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Service name (several can be installed under different names)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'procexit;service;uninstall' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Service name')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'procexit;service;start' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Service name')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'procexit;service;stop' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Service name')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'procexit;service;run' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'name')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'procexit;service;help' {
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Register the service to run `watch` with the options that follow')
            [CompletionResult]::new('uninstall', 'uninstall', [CompletionResultType]::ParameterValue, 'Stop (if running) and remove the service')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the service and wait until it runs')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop the service and wait until it stopped')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'What the service manager runs (not for use from a console)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'procexit;service;help;install' {
            break
        }
        'procexit;service;help;uninstall' {
            break
        }
        'procexit;service;help;start' {
            break
        }
        'procexit;service;help;stop' {
            break
        }
        'procexit;service;help;run' {
            break
        }
        'procexit;service;help;help' {
            break
        }
        'procexit;completions' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'procexit;man' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'procexit;help' {
            [CompletionResult]::new('watch', 'watch', [CompletionResultType]::ParameterValue, 'Print every process exit as it happens (Ctrl-C stops and prints a summary)')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'Wait until the given processes end (any process, not only children)')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Print the process exits recorded in Windows .etl trace files (on any OS)')
            [CompletionResult]::new('service', 'service', [CompletionResultType]::ParameterValue, 'Run watch as a Windows service: install, uninstall, start, stop')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script (bash, zsh, fish, elvish, powershell)')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print a man page (roff): procexit(1), or procexit-COMMAND(1)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'procexit;help;watch' {
            break
        }
        'procexit;help;wait' {
            break
        }
        'procexit;help;replay' {
            break
        }
        'procexit;help;service' {
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Register the service to run `watch` with the options that follow')
            [CompletionResult]::new('uninstall', 'uninstall', [CompletionResultType]::ParameterValue, 'Stop (if running) and remove the service')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the service and wait until it runs')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop the service and wait until it stopped')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'What the service manager runs (not for use from a console)')
            break
        }
        'procexit;help;service;install' {
            break
        }
        'procexit;help;service;uninstall' {
            break
        }
        'procexit;help;service;start' {
            break
        }
        'procexit;help;service;stop' {
            break
        }
        'procexit;help;service;run' {
            break
        }
        'procexit;help;completions' {
            break
        }
        'procexit;help;man' {
            break
        }
        'procexit;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
