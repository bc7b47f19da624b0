// MUSE: emotional image generation and editing by test-time optimization of an emotion
// token inside Stable Diffusion, guided by an emotion classifier (docs/METHOD.md).
//
// API
//   let engine = try SynthesisEngine.load(model:, tower:, head:, text:)
//   var state = try engine.start(job, image: nil)       // SynthesisJob: prompt, emotion, method, seed, steps, w, settings
//   while !engine.isFinished(state) { state = engine.advance(state) }   // one DDIM step each
//   let result = engine.finish(state)                    // image, 8-bit RGB, probabilities, trace
// `SynthesisState` is the whole synthesis after a step (Codable: `jsonData()`, or
// `checkpointArrays()` + `checkpointMetadata()` for a float-compressing codec); resuming
// from a restored copy gives the same bytes as never stopping (SynthesisTests).
//
// One guided step (method muse):
//   1. eps_u = UNet(z_t, ∅) once, eps_c = UNet(z_t, prompt ⊕ v), eps = eps_u + w·(eps_c − eps_u).
//      ∅ is the negative prompt; for an edit, what its inversion says (EditInversion.swift):
//      the source prompt (negative-prompt inversion) or the step's optimised null text.
//   2. WHEN: s_t = cos(CLIP_img(decode(x̂0)), CLIP_txt(prompt)); guidance starts once s_t has
//      settled, inside a window given as fractions of the part of the schedule the job
//      denoises (an edit's last `strength` of it; GuidanceWindow). x̂0 is decoded by the tiny
//      decoder when one is loaded, else the full VAE: a decoder forward per step (on the
//      miniworld, `muse edit` prints the preview at ~95 % of the rest of a plain step; at full
//      size a VAE decode costs about a step's two UNet calls, docs/PERFORMANCE.md).
//      `preview: latent-rgb` (SD 1.x latents only) skips the decoder.
//   3. At the start step (WHICH): e_inh = top non-target class of the x̂0 the prompt alone
//      predicts (one more conditional UNet call, without the token); S = the
//      similar_emotions entry for e* minus e_inh.
//   4. HOW: K × { v ← Adam(v, ∇_v L_emo(classifier(decode(x̂0(eps(v)))))) } through the
//      decoder, the x̂0 formula, the UNet's conditional branch and the text encoder.
//   5. eps with the updated v, DDIM step (eta 0).
//
// Universal guidance (the baseline) is Bansal et al.'s forward guidance with self-recurrence:
// SynthesisEngine.universalGuidance. Finished images are scored apart from the guidance
// (ImageEvaluation: an evaluator classifier, CLIP score, CLIP-I).
//
// Behaviour on the bundled tiny random-weight models: Tests/MUSETests/SynthesisTests.swift
// and FidelityTests.swift measure it and state the figures beside their assertions.
