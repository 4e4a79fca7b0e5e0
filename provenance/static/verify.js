// The verification page: takes an image (file chooser, drag and drop, paste), sends it to our own
// POST /v1/verify and explains the JSON answer in plain words. Text goes in through textContent only,
// so nothing from an answer or a file name can become markup.
"use strict";

(function () {
  const main = document.getElementById("main");
  const $ = (id) => document.getElementById(id);
  const verifyUrl = main.dataset.verifyUrl;
  const maxBytes = Number(main.dataset.maxUploadBytes);
  const MATCH_CONFIDENCE = 0.9; // index/scoring.py: the calibrated "matched" threshold
  const CROPPED_BELOW = 0.9; // a copy that shows less of the original than this is called a crop
  const SVG_NS = "http://www.w3.org/2000/svg";

  const KICKERS = {
    authentic: "Confirmed",
    deleted: "Signed by us",
    matched: "Match found",
    possible_match: "Needs review",
    no_match: "No match",
  };

  const STATES = {
    Trusted: "Signed with a certificate on our trust list, and nothing has changed since it was signed.",
    Valid:
      "Nothing has changed since it was signed, but the signer is not on our trust list, so we cannot " +
      "vouch for who they are.",
    Invalid:
      "The image or its credentials were altered after signing, or the signature is broken. Do not rely " +
      "on what these credentials say.",
  };

  // c2pa validation status codes (C2PA specification, "Validation") in words.
  const FAILURES = {
    "assertion.dataHash.mismatch": "The image data changed after it was signed.",
    "assertion.bmffHash.mismatch": "The image data changed after it was signed.",
    "assertion.boxesHash.mismatch": "The image data changed after it was signed.",
    "assertion.hashedURI.mismatch": "Part of the credentials changed after they were signed.",
    "assertion.missing": "Part of the credentials is missing.",
    "claim.missing": "The credentials are incomplete.",
    "claimSignature.missing": "The credentials are not signed.",
    "claimSignature.mismatch": "The signature does not match the credentials.",
    "claimSignature.outsideValidity": "The signature was made outside the certificate's validity period.",
    "signingCredential.untrusted": "The signer's certificate is not on our trust list.",
    "signingCredential.invalid": "The signer's certificate is malformed or not allowed to sign.",
    "signingCredential.revoked": "The signer's certificate has been revoked.",
    "signingCredential.expired": "The signer's certificate had expired.",
    "timeStamp.mismatch": "The trusted timestamp does not match the signature.",
    "timeStamp.untrusted": "The timestamp comes from an authority we do not trust.",
    "timeStamp.outsideValidity": "The timestamp lies outside the certificate's validity period.",
    "manifest.inaccessible": "The credentials point to data that could not be read.",
    "general.error": "The credentials could not be checked.",
  };

  const SOURCE_TYPES = {
    trainedAlgorithmicMedia: "It declares that an AI model generated the image.",
    compositeWithTrainedAlgorithmicMedia: "It declares that the image combines AI-generated and other material.",
    algorithmicMedia: "It declares that a computer program (not a trained AI model) made the image.",
    digitalCapture: "It declares that the image was captured by a camera.",
    compositeCapture: "It declares that the image combines several camera captures.",
    composite: "It declares that the image is a composite of other images.",
    digitalArt: "It declares that a person made the image with digital tools.",
  };

  const METHODS = {
    exact_bytes: () => "The file is identical, byte for byte, to the one we published.",
    exact_pixels: () => "Every pixel is identical to the image we published.",
    c2pa: () => "Its Content Credentials name this image and carry our signature.",
    pdq: (m) =>
      `The overall picture matches: its visual fingerprint differs in ${m.distance} of 256 bits ` +
      "(0 means identical; unrelated images differ in about 128).",
    local_features: (m) =>
      `${m.score} distinctive details line up with the original, in the same arrangement` +
      (m.agreement === undefined
        ? "."
        : `; laid over the original, ${Math.round(100 * m.agreement)} % of the shared picture looks the same.`),
    dense_alignment: (m) =>
      "Slid over the original at every size, it fits one place exactly: there, " +
      `${Math.round(100 * m.agreement)} % of the shared picture looks the same.`,
    colour_fill: (m) =>
      "A smooth picture with few details: scaled onto the original, with at most a mild " +
      `colour edit, ${Math.round(100 * m.agreement)} % of it has the same colours in the same places.`,
  };

  const PROBLEMS = {
    401: "This service checks images only for partners with an API key.",
    413: "This file is too large for us to check.",
    415: "This does not look like an image we can read. Try a JPEG, PNG or WebP file.",
    422: "This image seems damaged or incomplete.",
    429: "You have checked many images in a short time. Please wait a little before the next one.",
  };

  let pending = 0; // only the newest request may fill the page
  let suspectUrl = null;

  const dateFormat = new Intl.DateTimeFormat("en-GB", { dateStyle: "long", timeZone: "UTC" });
  const dateTimeFormat = new Intl.DateTimeFormat("en-GB", {
    dateStyle: "long",
    timeStyle: "short",
    timeZone: "UTC",
  });

  function formatDate(iso, withTime) {
    const date = new Date(iso);
    if (!iso || Number.isNaN(date.getTime())) return iso || "an unknown date";
    return withTime ? `${dateTimeFormat.format(date)} UTC` : dateFormat.format(date);
  }

  function percent(value) {
    return `${Math.round(value * 100)} %`;
  }

  function clear(element) {
    element.replaceChildren();
  }

  function addFact(list, term, description) {
    if (description === null || description === undefined || description === "") return;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = description;
    list.append(dt, dd);
  }

  function addItem(list, text) {
    const li = document.createElement("li");
    li.textContent = text;
    list.append(li);
  }

  function setStatus(text, busy) {
    $("status").textContent = text;
    $("status").classList.toggle("busy", Boolean(busy));
  }

  function sourceType(uri) {
    if (!uri) return "It makes no statement about AI.";
    const name = uri.split("/").pop();
    return SOURCE_TYPES[name] || `It declares the source type "${name}".`;
  }

  // A possible match the service does not show us: the record may never have been published, so the
  // answer names no image (see the README's "Privacy").
  function withheld(result) {
    const best = result.matches[0];
    return Boolean(best && best.withheld);
  }

  function headline(result) {
    const best = result.matches[0];
    const record = best && !best.withheld ? best.record : null;
    if (withheld(result)) {
      return "Possibly a copy of an image we generated — ask us to review it.";
    }
    const model = record ? record.model : result.c2pa.claim_generator || "our model";
    const created = record ? record.created_at : result.deleted && result.deleted.created_at;
    const date = formatDate(created || result.c2pa.signed_at, false);
    switch (result.verdict) {
      case "authentic":
        return `Generated by ${model} on ${date}; its Content Credentials are intact.`;
      case "deleted":
        return `Signed by us on ${date}; the record of this image has since been deleted.`;
      case "matched":
        if (best.coverage !== null && best.coverage < CROPPED_BELOW) {
          return `This looks like a cropped copy of an image generated by ${model} on ${date}.`;
        }
        return `This looks like a copy of an image generated by ${model} on ${date}.`;
      case "possible_match":
        return `Possibly a copy of an image generated by ${model} on ${date} — review the evidence below.`;
      default:
        return "We found no match. That does not prove a person made this image.";
    }
  }

  function verdictDetail(result) {
    const c2pa = result.c2pa;
    if (result.verdict === "authentic") {
      return "The file carries the signed label we attached when our model made it, and it is unchanged.";
    }
    if (result.verdict === "deleted") {
      return (
        "The file carries the signed label we attached when our model made it, and it is unchanged, but the " +
        "record of this image was deleted at its owner's request, so we have nothing more to show."
      );
    }
    if (withheld(result)) {
      return (
        "It resembles an image our model generated, but not closely enough for us to be sure. We do not show " +
        "that image or its details, because it may never have been published. If it matters, ask us to " +
        "review it."
      );
    }
    if (result.verdict === "no_match") {
      if (c2pa.present && c2pa.validation_state !== "Invalid") {
        return "It does carry Content Credentials from someone else: read what they say below.";
      }
      return "It is not among the images our model has generated, as far as we can tell. Other AI tools exist.";
    }
    const seen = result.verdict === "matched" ? "The picture matches" : "The picture resembles";
    if (!c2pa.present) {
      return `${seen} one we registered. Its Content Credentials have been removed, as most social networks do.`;
    }
    if (c2pa.validation_state === "Invalid") {
      return `${seen} one we registered. It carries Content Credentials that were altered after signing.`;
    }
    return `${seen} one we registered, though the credentials it carries are not ours.`;
  }

  function showOriginal(result) {
    const best = result.matches[0];
    const figure = $("original-figure");
    const shown = best && !best.withheld && result.verdict !== "no_match" && result.verdict !== "deleted";
    // A preview link is missing only when the service cannot sign links for now.
    figure.hidden = !shown || !best.record.thumbnail_url;
    $("no-original").hidden = !figure.hidden;
    let absent = "No image our model generated resembles this one.";
    if (result.verdict === "deleted") {
      absent = "The original was deleted at its owner's request.";
    } else if (withheld(result)) {
      absent = "We do not show the image it resembles: it may never have been published.";
    } else if (shown) {
      absent = "We cannot show the original right now.";
    }
    $("no-original-caption").textContent = absent;
    if (figure.hidden) return;
    const record = best.record;
    const image = $("original-image");
    image.src = record.thumbnail_url;
    image.alt = `The original registered image, generated by ${record.model} on ${formatDate(record.created_at)}`;
    // The polygon is in the original's pixels; a viewBox of the original's size scales it onto the
    // thumbnail, whatever size the thumbnail is shown at.
    const overlay = $("region-overlay");
    overlay.setAttribute("viewBox", `0 0 ${record.width} ${record.height}`);
    const region = best.region || [];
    const points = region.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" ");
    for (const id of ["region-outline", "region-halo"]) $(id).setAttribute("points", points);
    const frame = `M0 0H${record.width}V${record.height}H0Z`;
    $("region-shade").setAttribute("d", points ? `${frame}M${points.replaceAll(" ", "L")}Z` : "");
    overlay.classList.toggle("has-region", region.length > 0);
    let caption = "The original we registered.";
    if (region.length && best.coverage !== null && best.coverage < CROPPED_BELOW) {
      caption += ` The outlined area, about ${percent(best.coverage)} of it, is the part your image shows.`;
    } else if (region.length) {
      caption += " The outline marks where your image lies on it.";
    }
    $("original-caption").textContent = caption;
  }

  function showConfidence(result) {
    const best = result.matches[0];
    const methods = $("methods");
    clear(methods);
    const scale = $("confidence-scale");
    if (result.verdict === "deleted") {
      scale.hidden = true;
      $("confidence-text").textContent =
        "Certain that we signed it: its Content Credentials carry our signature and check out.";
      return;
    }
    if (result.verdict === "no_match" || !best) {
      scale.hidden = true;
      $("confidence-text").textContent =
        "Nothing we have registered resembles this image closely enough to show you. We compare both the " +
        "whole picture and its small details, which usually finds copies that were re-saved, resized, " +
        "cropped or screenshotted, but heavily edited copies can escape us.";
      return;
    }
    scale.hidden = false;
    $("confidence-bar").style.width = percent(best.confidence).replace(" ", "");
    $("confidence-bar").className = best.confidence >= MATCH_CONFIDENCE ? "strong" : "weak";
    $("confidence-value").textContent = `${percent(best.confidence)} confidence`;
    let text;
    if (result.verdict === "authentic") {
      text = "Certain: the file's own signed credentials identify it, and they check out.";
    } else if (best.confidence >= MATCH_CONFIDENCE) {
      text =
        "Strong evidence. We only call something a match above 90 %, a level we set on a benchmark of " +
        "unrelated images so that none of them reaches it.";
    } else if (best.withheld) {
      text = "Some evidence, but below the 90 % at which we call it a match. Do not rely on it without our review.";
    } else {
      text =
        "Some evidence, but below the 90 % at which we call it a match. Compare the two images yourself " +
        "before you rely on this.";
    }
    $("confidence-text").textContent = text;
    for (const method of best.methods || []) {
      const describe = METHODS[method.method];
      addItem(methods, describe ? describe(method) : `Matched by ${method.method}.`);
    }
  }

  function showCredentials(c2pa) {
    const list = $("credentials-list");
    const failures = $("failures");
    clear(list);
    clear(failures);
    $("failures-block").hidden = true;
    if (!c2pa.present) {
      $("credentials-summary").textContent = c2pa.error
        ? "The file seems to hold Content Credentials, but we could not read them."
        : "This file carries no Content Credentials. That is normal for images downloaded from social " +
          "networks, which remove them, so their absence proves nothing either way.";
      return;
    }
    const badge = document.createElement("strong");
    badge.className = `state state-${c2pa.validation_state}`;
    badge.textContent = c2pa.validation_state;
    $("credentials-summary").replaceChildren(badge, " ", STATES[c2pa.validation_state] || "");
    const signer = c2pa.signer ? c2pa.signer + (c2pa.signed_by_us ? " (that is us)" : "") : "unknown";
    addFact(list, "Signed by", signer);
    addFact(list, "Certificate issued by", c2pa.issuer);
    addFact(list, "Signed on", c2pa.signed_at ? formatDate(c2pa.signed_at, true) : null);
    addFact(list, "AI disclosure", sourceType(c2pa.digital_source_type));
    addFact(list, "Made with", c2pa.claim_generator);
    if (c2pa.generation_id) {
      addFact(list, "Generation ID", c2pa.generation_id);
    } else if (c2pa.claimed_generation_id) {
      addFact(list, "Generation ID it claims", `${c2pa.claimed_generation_id} (not confirmed)`);
    }
    if (c2pa.failures.length) {
      $("failures-block").hidden = false;
      for (const code of c2pa.failures) {
        addItem(failures, `${FAILURES[code] || "A check failed."} (${code})`);
      }
    }
  }

  function showRecord(result) {
    const best = result.matches[0];
    const list = $("record-list");
    clear(list);
    if (result.deleted) {
      $("record-section").hidden = false;
      addFact(list, "Generated on", formatDate(result.deleted.created_at, true));
      addFact(list, "Record deleted on", formatDate(result.deleted.deleted_at, true));
      addFact(list, "Generation ID", result.deleted.generation_id);
      return;
    }
    $("record-section").hidden = result.verdict === "no_match" || !best || best.withheld;
    if ($("record-section").hidden) return;
    const record = best.record;
    addFact(list, "Model", record.model);
    addFact(list, "Generated on", formatDate(record.created_at, true));
    addFact(list, "Size", `${record.width} × ${record.height} pixels`);
    for (const [key, value] of Object.entries(record.public || {})) {
      const term = key.replaceAll("_", " ");
      addFact(list, term.charAt(0).toUpperCase() + term.slice(1), typeof value === "string" ? value : JSON.stringify(value));
    }
    addFact(list, "Generation ID", record.generation_id);
  }

  function showResult(result) {
    $("verdict-box").className = `verdict verdict-${result.verdict}`;
    $("verdict-kicker").textContent = KICKERS[result.verdict] || "";
    $("verdict").textContent = headline(result);
    $("verdict-detail").textContent = verdictDetail(result);
    showOriginal(result);
    showConfidence(result);
    showCredentials(result.c2pa);
    showRecord(result);
    $("result").hidden = false;
    $("drop-zone").classList.add("compact");
    main.dataset.state = result.verdict;
  }

  function showProblem(status, problem) {
    const detail = problem && problem.detail ? problem.detail.replace(/\.$/, "") : "";
    const words = document.createElement("strong");
    words.textContent = PROBLEMS[status] || "We could not check this image.";
    setStatus("", false);
    $("status").append(words, detail ? ` ${detail.charAt(0).toUpperCase()}${detail.slice(1)}.` : "");
    $("status").classList.add("problem");
    $("status").scrollIntoView({ block: "nearest" });
    main.dataset.state = "error";
  }

  async function check(file) {
    const request = ++pending;
    $("result").hidden = true;
    $("status").classList.remove("problem");
    main.dataset.state = "checking";
    if (file.size > maxBytes) {
      showProblem(413, { detail: `the limit is ${main.dataset.maxUploadMb} MB` });
      return;
    }
    if (suspectUrl) URL.revokeObjectURL(suspectUrl);
    suspectUrl = URL.createObjectURL(file);
    $("suspect-image").src = suspectUrl;
    setStatus("Checking your image…", true);
    const body = new FormData();
    body.append("image", file, file.name || "pasted-image");
    let response;
    let answer = null;
    try {
      response = await fetch(verifyUrl, { method: "POST", body, credentials: "omit" });
      answer = await response.json();
    } catch (error) {
      // No answer at all, or one that is not JSON (a proxy's error page): the status still says why.
    }
    if (request !== pending) return;
    if (!response || !response.ok || !answer) {
      showProblem(response ? response.status : 0, answer || { detail: "the service did not answer; try again" });
      return;
    }
    setStatus("", false);
    showResult(answer);
    $("verdict").focus();
  }

  function imageFrom(dataTransfer) {
    if (!dataTransfer) return null;
    const files = Array.from(dataTransfer.files || []);
    return files.find((f) => f.type.startsWith("image/")) || files[0] || null;
  }

  function init() {
    const input = $("file-input");
    const zone = $("drop-zone");
    input.addEventListener("change", () => {
      if (input.files.length) check(input.files[0]);
      input.value = ""; // choosing the same file again must check it again
    });
    // Drops anywhere on the page count, so a near miss does not make the browser open the file.
    document.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    document.addEventListener("dragleave", (event) => {
      if (!event.relatedTarget) zone.classList.remove("dragging");
    });
    document.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      const file = imageFrom(event.dataTransfer);
      if (file) check(file);
    });
    document.addEventListener("paste", (event) => {
      const file = imageFrom(event.clipboardData);
      if (file) {
        event.preventDefault();
        check(file);
      }
    });
    // Phones have no Ctrl+V: where the browser lets a page read the clipboard, offer a button.
    const pasteButton = $("paste-button");
    if (navigator.clipboard && navigator.clipboard.read) {
      pasteButton.hidden = false;
      pasteButton.addEventListener("click", async () => {
        try {
          for (const item of await navigator.clipboard.read()) {
            const type = item.types.find((t) => t.startsWith("image/"));
            if (type) {
              check(new File([await item.getType(type)], "pasted-image", { type }));
              return;
            }
          }
          setStatus("There is no image on the clipboard. Copy an image first.", false);
        } catch (error) {
          setStatus("The browser did not let us read the clipboard. Use Ctrl+V or choose a file.", false);
        }
      });
    }
    $("again").addEventListener("click", () => {
      $("result").hidden = true;
      main.dataset.state = "";
      input.focus();
      window.scrollTo(0, 0);
    });
    main.dataset.state = "ready";
  }

  init();
})();
