/** The task policy's number fields, as the create form and the task's policy editor both show them. */
import { POLICY_FIELDS, type PolicyKey } from "./task-payload.js";

export function PolicyInputs({
  values,
  errors,
  placeholders,
  onInput,
}: {
  values: Record<PolicyKey, string>;
  errors: Record<PolicyKey, string | undefined>;
  /** Show each field's default as its placeholder (the create form: blank means the default). */
  placeholders?: boolean;
  onInput: (key: PolicyKey, value: string) => void;
}) {
  return (
    <div class="fields">
      {POLICY_FIELDS.map((f) => (
        <label key={f.key}>
          {f.label}
          {f.unit && <span class="muted"> ({f.unit})</span>}
          <input
            inputMode="numeric"
            value={values[f.key]}
            placeholder={placeholders ? String(f.def) : undefined}
            aria-invalid={errors[f.key] ? "true" : undefined}
            onInput={(e) => onInput(f.key, (e.target as HTMLInputElement).value)}
          />
          <span class={`field-error ${errors[f.key] ? "shown" : ""}`}>{errors[f.key] ?? ""}</span>
        </label>
      ))}
    </div>
  );
}
