import { formatCount } from "../../format-count.js";
import { AuthMode, CheckStatus, SecretSource, type GetStatusResponse } from "../../../gen/carapace/ops/v1/ops_pb.js";
import { ops, unary } from "../api.js";
import { bytes, dateTime, duration, tsMs } from "../format.js";
import { useNow, usePoll } from "../hooks.js";
import { Badge, Facts, Freshness, Notice, PageHeader, ProblemLine, Section, type Tone } from "../ui.js";
import { BugreportPanel, DoctorPanel } from "./overview-doctor.js";

const CHECK_TONE: Record<number, [Tone, string]> = {
  [CheckStatus.OK]: ["ok", "ok"],
  [CheckStatus.WARN]: ["warn", "warn"],
  [CheckStatus.FAIL]: ["fail", "fail"],
};

/** `cara status`'s verdict: FAILING (n failing, m warnings) / DEGRADED (m warnings) / HEALTHY. */
export function verdict(s: GetStatusResponse): [Tone, string] {
  const warns = s.checks.filter((c) => c.status === CheckStatus.WARN).length;
  const fails = s.checks.filter((c) => c.status === CheckStatus.FAIL).length;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  if (fails > 0 || s.shuttingDown)
    return ["fail", `FAILING (${fails} failing${warns ? `, ${plural(warns, "warning")}` : ""})${s.shuttingDown ? ", shutting down" : ""}`];
  if (warns > 0) return ["warn", `DEGRADED (${plural(warns, "warning")})`];
  return ["ok", "HEALTHY"];
}

export function OverviewPage() {
  const status = usePoll((signal) => ops.getStatus({}, unary(signal)), 2000, []);
  const now = useNow(1000);
  const s = status.data;
  // Uptime ticks between answers: the server's figure plus the time since it was read.
  const uptime = s && status.at !== undefined ? Number(s.uptimeSeconds) + (now - status.at) / 1000 : undefined;
  const secretCheck = s?.checks.find((c) => c.name === "server_secret");
  const secretWarning = s && (s.secretSource === SecretSource.GENERATED || (secretCheck && secretCheck.status !== CheckStatus.OK));

  return (
    <>
      <PageHeader title="Overview">
        <Freshness at={status.at} now={now} />
      </PageHeader>
      <ProblemLine problem={status.problem} />
      {s === undefined ? (
        <p class="muted">Reading the server's status…</p>
      ) : (
        <>
          {secretWarning && (
            <Notice tone="warn" title="Set CARAPACE_SERVER_SECRET in production">
              This server uses a secret it generated into its state dir. Backup manifests and other integrity tags are keyed from it, and backups leave it out:
              a rebuilt deployment with a new secret cannot verify its old backups. Generate one with <code>openssl rand -base64 48</code>, set it in the
              server's environment and restart.
            </Notice>
          )}
          <div class="verdict" data-testid="verdict">
            <Badge tone={verdict(s)[0]}>{verdict(s)[1]}</Badge>
            <span>
              carapace <strong>{s.version}</strong> at {s.bind}:{s.port}, up <span class="num">{uptime !== undefined ? duration(uptime) : "—"}</span>
            </span>
          </div>
          <Section title="Checks" id="checks">
            <ul class="checks">
              {s.checks.map((c) => {
                const [tone, word] = CHECK_TONE[c.status] ?? ["muted", "?"];
                return (
                  <li class="check" key={c.name} data-check={c.name}>
                    <Badge tone={tone}>{word}</Badge>
                    <span class="check-name">{c.name}</span>
                    <span class="check-message">{c.message}</span>
                  </li>
                );
              })}
            </ul>
          </Section>
          <div class="grid-2">
            <Section title="Server">
              <Facts
                rows={[
                  ["Version", `${s.version} (node ${s.nodeVersion}, ${s.platform}/${s.arch}, pid ${s.pid})`],
                  ["Listening", `${s.bind}:${s.port} (${s.tls ? "TLS" : "plaintext"})`],
                  ["Started", dateTime(tsMs(s.startedAt))],
                  ["State dir", <code>{s.stateDir}</code>],
                  [
                    "Auth",
                    `bearer token from ${s.authMode === AuthMode.TOKEN_ENV ? "CARAPACE_GATEWAY_TOKEN" : "<state>/auth/token"}; server secret ${s.secretSource === SecretSource.ENV ? "from CARAPACE_SERVER_SECRET" : "generated (<state>/auth/server-secret)"}`,
                  ],
                  [
                    "Process",
                    s.diagnostics
                      ? `${bytes(s.diagnostics.memoryRssBytes)} RSS, ${s.diagnostics.openFds} open files, ${bytes(s.diagnostics.diskFreeBytes)} disk free`
                      : "—",
                  ],
                ]}
              />
            </Section>
            <Section title="Activity">
              <Facts
                rows={[
                  [
                    "Tasks",
                    s.tasks
                      ? `${s.tasks.total} stored (${
                          Object.entries(s.tasks.countsByState)
                            .filter(([, n]) => n > 0)
                            .map(([k, n]) => `${n} ${k}`)
                            .join(", ") || "none"
                        }), worker ${s.tasks.workerAlive ? `${s.tasks.workerSlotsBusy}/${s.tasks.workerSlotsTotal} busy` : "stopped"}`
                      : "—",
                  ],
                  [
                    "Logs",
                    s.logs
                      ? `${s.logs.ringEntries} of ${s.logs.ringCapacity} kept in memory${s.logs.filePath ? `; file ${s.logs.filePath} (${bytes(s.logs.fileSizeBytes)})` : ""}`
                      : "—",
                  ],
                  [
                    "Backup",
                    s.backup?.lastBackupAt
                      ? `last ${dateTime(tsMs(s.backup.lastBackupAt))} (${duration(Number(s.backup.lastBackupAgeSeconds))} ago), ${formatCount(s.backup.archiveCount, "archive")}`
                      : `none yet, ${formatCount(s.backup?.archiveCount ?? 0, "archive")}`,
                  ],
                  [
                    "Update",
                    s.update
                      ? `${s.update.managed ? "managed install" : "not managed"}${s.update.transactionState ? `; transaction ${s.update.transactionState} (${s.update.transactionPhase})` : ""}${s.update.rollbackState ? `; rollback marker ${s.update.rollbackState}` : ""}`
                      : "—",
                  ],
                ]}
              />
            </Section>
          </div>
          <DoctorPanel />
          <BugreportPanel />
          {s.shuttingDown && <Notice tone="fail" title="The server is shutting down." live />}
        </>
      )}
    </>
  );
}
