import Foundation
import Imaging
import Support
import Vocabulary

/// The `editing:` section: source images listed, globbed and captioned, and how they are
/// fitted to the model.
extension SpecLoader {
    func readEditing(_ node: SpecNode?, imagesRoot: URL, sizeRules: ImageSizeRules?) -> EditPlan? {
        guard let e = r.map(node, "editing", allowed: Self.editingKeys) else { return nil }
        var plan = EditPlan()
        if e["images"] == nil && e["images_glob"] == nil {
            r.issue(
                "editing.images", "required (a list of PNG or JPEG paths relative to images_root), or images_glob")
        }
        var seen: [String: String] = [:]
        if e["images"] != nil, let items = r.list(e["images"], "editing.images") {
            if items.isEmpty { r.issue("editing.images", "must list at least one image", e["images"]) }
            for (i, item) in items.enumerated() {
                let p = "editing.images[\(i)]"
                guard let (path, caption) = editImage(item, p) else { continue }
                let key = CaptionsFile.normalised(path)
                if let first = seen[key] {
                    r.issue(p, "duplicate of \(first)", item)
                    continue
                }
                seen[key] = p
                do {
                    let url = try PathConfinement.resolve(path, under: imagesRoot)
                    plan.images.append(
                        EditPlan.Source(
                            path: path, url: url, node: item, place: p, sourcePrompt: caption,
                            inlineCaption: caption != nil))
                } catch {
                    r.issue(p, "\(error)", item)
                }
            }
        }
        let issuesBefore = r.issues.count
        if let node = e["images_glob"] { plan.images += globbedImages(node, imagesRoot: imagesRoot, seen: &seen) }
        let imagesComplete = r.issues.count == issuesBefore
        if plan.images.count > JobSpec.maxJobs {
            r.issue("editing", "\(plan.images.count) source images (at most \(JobSpec.maxJobs))")
            plan.images = []
        }
        if let node = e["captions"] {
            applyCaptions(node, to: &plan.images, imagesRoot: imagesRoot, imagesComplete: imagesComplete)
        }
        plan.emotions = emotions(e["emotions"], "editing.emotions")
        if let v = e["source_prompt"].flatMap({ r.string($0, "editing.source_prompt") }) { plan.sourcePrompt = v }
        if let v = r.double(e["strength"], "editing.strength", check: JobSettings.strengthRule.problem) {
            plan.strength = Float(v)
        }
        if let kind: InversionKind = r.choice(e["inversion"], "editing.inversion", "inversion") {
            plan.inversion = kind
        }
        let nullTextSteps =
            Int64(JobSettings.nullTextStepsRange.lowerBound)...Int64(JobSettings.nullTextStepsRange.upperBound)
        if let v = r.int(e["null_text_steps"], "editing.null_text_steps", range: nullTextSteps) {
            plan.nullTextSteps = Int(v)
        }
        readFit(e, into: &plan, sizeRules: sizeRules)
        if let node = e["shared_sources"] { plan.sharedSources = sharedSourcesFolder(node) }
        return plan
    }

    /// `editing.shared_sources`: absolute, since workers on other hosts read the same path.
    func sharedSourcesFolder(_ node: SpecNode) -> String? {
        let key = "editing.shared_sources"
        guard let text = r.string(node, key, allowEmpty: false) else { return nil }
        guard text.hasPrefix("/") else {
            r.issue(key, "must be an absolute path that every worker host mounts, got '\(text)'", node)
            return nil
        }
        let components = text.split(separator: "/")
        guard !components.contains(".."), !components.contains("."), text.utf8.count <= 1024,
            !text.contains("\0")
        else {
            r.issue(
                key, "'\(text.prefix(80))' must be a plain absolute path (no '.' or '..', at most 1024 bytes)", node)
            return nil
        }
        return "/" + components.joined(separator: "/")
    }

    /// `editing.fit` and the target `editing.width`/`height` it may use.
    func readFit(_ e: [String: SpecNode], into plan: inout EditPlan, sizeRules: ImageSizeRules?) {
        if let fit: ImageFit = r.choice(e["fit"], "editing.fit", "fit") { plan.fit = fit }
        let sides = Int64(JobSettings.sideRange.lowerBound)...Int64(JobSettings.sideRange.upperBound)
        if let v = r.int(e["width"], "editing.width", range: sides) { plan.width = Int(v) }
        if let v = r.int(e["height"], "editing.height", range: sides) { plan.height = Int(v) }
        guard plan.width != nil || plan.height != nil else { return }
        let key = plan.width == nil ? "editing.height" : "editing.width"
        let node = e["width"] ?? e["height"]
        if plan.fit == .refuse {
            r.issue(key, "a target size needs editing.fit: crop or resize (refuse uses each image's own size)", node)
            return
        }
        guard let sizeRules else { return }
        // crop: a missing side is each image's own, checked per image; resize: the native side.
        let width = plan.width ?? (plan.fit == .resize ? sizeRules.nativeSide : sizeRules.multiple)
        let height = plan.height ?? (plan.fit == .resize ? sizeRules.nativeSide : sizeRules.multiple)
        if let problem = sizeRules.problem(width: width, height: height) {
            r.issue(key, problem, node)
        } else if let problem = sizeRules.memoryProblem(width: width, height: height, environment: environment) {
            r.issue(key, problem, node)
        }
    }

    /// `editing.images_glob`: one pattern or a list, relative to images_root (`ImageGlob`).
    /// Files the explicit list already names are skipped (that entry, with its caption, wins).
    func globbedImages(_ node: SpecNode, imagesRoot: URL, seen: inout [String: String]) -> [EditPlan.Source] {
        guard let items = r.list(node, "editing.images_glob", allowScalar: true) else { return [] }
        if items.isEmpty { r.issue("editing.images_glob", "must list at least one pattern", node) }
        var out: [EditPlan.Source] = []
        for (i, item) in items.enumerated() {
            let p = items.count == 1 && !isList(node) ? "editing.images_glob" : "editing.images_glob[\(i)]"
            guard let pattern = r.string(item, p, allowEmpty: false) else { continue }
            let matches: [ImageGlob.Match]
            do { matches = try ImageGlob.matches(pattern, under: imagesRoot, limit: JobSpec.maxJobs) } catch {
                r.issue(p, "'\(pattern)': \(error)", item)
                continue
            }
            if matches.isEmpty { r.issue(p, "'\(pattern)' matches no file under \(imagesRoot.path)", item) }
            for m in matches where seen[m.path] == nil {
                seen[m.path] = "\(p) ('\(m.path)')"
                out.append(EditPlan.Source(path: m.path, url: m.url, node: item, place: p))
            }
        }
        return out
    }

    func isList(_ node: SpecNode) -> Bool {
        if case .list = node { return true }
        return false
    }

    /// `editing.captions` (relative to images_root): each row's caption goes to the image its
    /// `file_name` names; a row naming no image of the batch is an error (a typo, or a glob that
    /// missed) — unless a glob already failed (`imagesComplete` false), when that would only
    /// repeat its error. An image's own `{path, source_prompt}` entry keeps its caption.
    func applyCaptions(_ node: SpecNode, to images: inout [EditPlan.Source], imagesRoot: URL, imagesComplete: Bool) {
        guard let path = r.string(node, "editing.captions", allowEmpty: false) else { return }
        let url: URL
        do { url = try PathConfinement.resolve(path, under: imagesRoot) } catch {
            r.issue("editing.captions", "\(error)", node)
            return
        }
        let contents: (rows: [CaptionsFile.Row], problems: [String])
        do { contents = try CaptionsFile.read(url, maxRows: JobSpec.maxJobs) } catch {
            r.issue("editing.captions", "\(error)", node)
            return
        }
        var problems = contents.problems
        let folder = CaptionsFile.normalised((path as NSString).deletingLastPathComponent)
        var byPath: [String: Int] = [:]
        for (i, img) in images.enumerated() { byPath[CaptionsFile.normalised(img.path)] = i }
        for row in contents.rows {
            let key = folder.isEmpty ? row.fileName : folder + "/" + row.fileName
            guard let i = byPath[key] else {
                let resolved = key == row.fileName ? "" : " (\(key) under images_root)"
                if imagesComplete {
                    problems.append(
                        "\(row.place): file_name '\(row.fileName)'\(resolved) is not among the editing images")
                }
                continue
            }
            if !images[i].inlineCaption { images[i].sourcePrompt = row.caption }
        }
        reportProblems(problems, "editing.captions", node)
    }

    /// An `editing.images` entry: a path, or {path, source_prompt} giving the image its own caption.
    func editImage(_ item: SpecNode, _ p: String) -> (path: String, caption: String?)? {
        guard case .map = item else { return r.string(item, p, allowEmpty: false).map { ($0, nil) } }
        guard let m = r.map(item, p, allowed: ["path", "source_prompt"]) else { return nil }
        guard let pathNode = m["path"] else {
            r.issue("\(p).path", "required (the image's path relative to images_root)", item)
            return nil
        }
        guard let path = r.string(pathNode, "\(p).path", allowEmpty: false) else { return nil }
        return (path, m["source_prompt"].flatMap { r.string($0, "\(p).source_prompt") })
    }

    /// Reads, decodes, fits and size-checks every source image; JPEGs and fitted images become
    /// canonical PNG blobs (`SourceImagePreparer`).
    func readSourceImages(_ plan: EditPlan, sizeRules: ImageSizeRules?) -> SourceImages {
        var sources = SourceImages()
        for img in plan.images {
            let p = img.place
            let bytes: Data
            do { bytes = try RegularFile.read(img.url.path, limit: JobSpec.maxImageBytes) } catch let e as FileReadError
            {
                r.issue(p, "cannot read '\(img.path)' (\(e.reason): \(img.url.path))", img.node)
                continue
            } catch {
                r.issue(p, "cannot read '\(img.path)' (\(error))", img.node)
                continue
            }
            let prepared: PreparedSource
            do {
                prepared = try SourceImagePreparer.prepare(
                    bytes, named: img.path, fit: plan.fit, requested: (plan.width, plan.height), rules: sizeRules)
            } catch {
                let separator = "\(error)".hasPrefix("is ") ? " " : ": "
                r.issue(p, "'\(img.path)'\(separator)\(error)", img.node)
                continue
            }
            let (width, height) = (prepared.image.width, prepared.image.height)
            if let sizeRules,
                let problem = sizeRules.memoryProblem(width: width, height: height, environment: environment)
            {
                r.issue(p, "'\(img.path)': \(problem): use a smaller image", img.node)
                continue
            }
            let sha = prepared.sha256
            sources.blobs[sha] = prepared.png
            sources.sizes[sha] = (width, height)
            sources.hashes[img.path] = sha
        }
        return sources
    }
}
