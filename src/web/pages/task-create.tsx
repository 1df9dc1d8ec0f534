import { Code, ConnectError } from "@connectrpc/connect";
import { useState } from "preact/hooks";
import { tasks, unary } from "../api.js";
import { report } from "../errors.js";
import { PolicyInputs } from "../policy-inputs.js";
import { PAYLOAD_KINDS, POLICY_FIELDS, TEMPLATES, parsePayload, policyError, type PayloadKind, type PolicyKey } from "../task-payload.js";
import { Section } from "../ui.js";

const pretty = (k: PayloadKind) => JSON.stringify(TEMPLATES[k], null, 2);

/** Create form: payload editor (checked as you type), policy, priority, delayed start. */
export function CreateTask({ onCreated }: { onCreated: (id: string) => void }) {
  const [kind, setKind] = useState<PayloadKind>("systemEvent");
  const [text, setText] = useState(pretty("systemEvent"));
  const [policy, setPolicy] = useState<Record<PolicyKey, string>>({ maxAttempts: "", maxTotalRuntimeMs: "", maxTurns: "", maxRunTimeoutSeconds: "" });
  const [priority, setPriority] = useState("");
  const [delay, setDelay] = useState("");
  const [busy, setBusy] = useState(false);
  const [serverError, setServerError] = useState<{ field: string; text: string } | undefined>();

  const parsed = parsePayload(text);
  const payloadError = "error" in parsed ? parsed.error : serverError?.field === "payload" ? serverError.text : undefined;
  const policyErrors = Object.fromEntries(
    POLICY_FIELDS.map((f) => [f.key, policyError(f.key, policy[f.key]) ?? (serverError?.field === f.key ? serverError.text : undefined)]),
  ) as Record<PolicyKey, string | undefined>;
  const priorityError =
    priority.trim() && !(/^-?\d+$/.test(priority.trim()) && Math.abs(Number(priority)) <= 1000)
      ? "priority must be between -1000 and 1000"
      : serverError?.field === "priority"
        ? serverError.text
        : undefined;
  const delayError =
    delay.trim() && !(/^\d+$/.test(delay.trim()) && Number(delay) <= 31_536_000) ? "a delay is a whole number of seconds (at most a year)" : undefined;
  const invalid = "error" in parsed || Object.values(policyErrors).some(Boolean) || !!priorityError || !!delayError;

  const submit = async (e: Event) => {
    e.preventDefault();
    if (invalid || !("payload" in parsed)) {
      (document.querySelector("[aria-invalid=true]") as HTMLElement | null)?.focus();
      return;
    }
    setBusy(true);
    setServerError(undefined);
    try {
      const overrides = Object.fromEntries(
        POLICY_FIELDS.filter((f) => policy[f.key].trim()).map((f) => [f.key, f.key === "maxTotalRuntimeMs" ? BigInt(policy[f.key]) : Number(policy[f.key])]),
      );
      const res = await tasks.createTask(
        {
          payload: parsed.payload,
          policy: overrides,
          ...(priority.trim() ? { priority: Number(priority) } : {}),
          ...(delay.trim() && Number(delay) > 0 ? { nextRunAtMs: BigInt(Date.now() + Number(delay) * 1000) } : {}),
        },
        unary(),
      );
      if (res.task) onCreated(res.task.id);
    } catch (err) {
      const p = report(err);
      const msg = err instanceof ConnectError && err.code === Code.InvalidArgument ? err.rawMessage : p.text;
      const field = /policy\.(\w+)/.exec(msg)?.[1] ?? (/payload/i.test(msg) ? "payload" : /priority/.test(msg) ? "priority" : "form");
      setServerError({ field, text: msg });
    } finally {
      setBusy(false);
    }
  };

  return (
    <Section title="New task" id="create-task">
      <form class="form" onSubmit={submit} noValidate>
        <label>
          Kind
          <select
            value={kind}
            onChange={(e) => {
              const k = (e.target as HTMLSelectElement).value as PayloadKind;
              setKind(k);
              setText(pretty(k));
              setServerError(undefined);
            }}
          >
            {PAYLOAD_KINDS.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
          </select>
        </label>
        <label for="payload">
          Payload (JSON, as for <code>cara task create --payload</code>)
        </label>
        <textarea
          id="payload"
          class="code"
          rows={7}
          spellcheck={false}
          value={text}
          aria-invalid={payloadError ? "true" : undefined}
          aria-describedby="payload-error"
          onInput={(e) => {
            setText((e.target as HTMLTextAreaElement).value);
            if (serverError?.field === "payload") setServerError(undefined);
          }}
        />
        <p id="payload-error" class={`field-error ${payloadError ? "shown" : ""}`} role="status">
          {payloadError ?? ""}
        </p>
        <fieldset>
          <legend>Policy (blank = default)</legend>
          <PolicyInputs
            values={policy}
            errors={policyErrors}
            placeholders
            onInput={(key, value) => {
              setPolicy({ ...policy, [key]: value });
              if (serverError?.field === key) setServerError(undefined);
            }}
          />
        </fieldset>
        <div class="fields">
          <label>
            Priority <span class="muted">(-1000..1000, higher first)</span>
            <input
              inputMode="numeric"
              value={priority}
              placeholder="0"
              aria-invalid={priorityError ? "true" : undefined}
              onInput={(e) => setPriority((e.target as HTMLInputElement).value)}
            />
            <span class={`field-error ${priorityError ? "shown" : ""}`}>{priorityError ?? ""}</span>
          </label>
          <label>
            Start after <span class="muted">(seconds; blank = now)</span>
            <input
              inputMode="numeric"
              value={delay}
              placeholder="0"
              aria-invalid={delayError ? "true" : undefined}
              onInput={(e) => setDelay((e.target as HTMLInputElement).value)}
            />
            <span class={`field-error ${delayError ? "shown" : ""}`}>{delayError ?? ""}</span>
          </label>
        </div>
        <p class={`field-error ${serverError?.field === "form" ? "shown" : ""}`} role="alert">
          {serverError?.field === "form" ? serverError.text : ""}
        </p>
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? "Creating…" : "Create task"}
          </button>
        </div>
      </form>
    </Section>
  );
}
