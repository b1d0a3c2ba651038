// StudyShare: OHIF's settings and the study's viewer token (CSP: no inline script).
// Loaded before OHIF's bundle on the viewer's page (templates/viewer.html).
(function () {
  "use strict";

  function meta(name) {
    var element = document.querySelector('meta[name="' + name + '"]');
    return element ? element.content : "";
  }

  var study = new URLSearchParams(window.location.search).get("StudyInstanceUIDs") || "";
  var studyPage = meta("studyshare-study-page") || "/studies";
  var authorization = null;
  var renewal = null;

  // OHIF's dist is built for "/": the portal serves it under /viewer/ (install_assets.py
  // rewrites its webpack public path; these are the two globals its index.html set inline).
  window.PUBLIC_URL = "/viewer/";
  window.browserImportFunction = function (name) {
    return import(name);
  };

  // POST /viewer/token: the study store's viewer token for this study (or its refusal).
  function ask() {
    return fetch("/viewer/token", {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "X-CSRF-Token": meta("studyshare-csrf"),
        "Content-Type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ study: study }).toString(),
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) throw body;
        return body;
      });
    });
  }

  // Keep the token and ask for the next one halfway through its life.
  function keep(issued) {
    authorization = "Bearer " + issued.token;
    window.clearTimeout(renewal);
    renewal = window.setTimeout(renew, Math.max(10, issued.expires_in / 2) * 1000);
  }

  function renew() {
    ask().then(keep, ended);
  }

  // The study store refused: say so over the images (they are no longer to be seen), with the
  // way back to the study page (which tells why: revoked, locked, expired, a code to enter).
  function ended(problem) {
    window.clearTimeout(renewal);
    if (document.querySelector(".studyshare-ended")) return;
    var cover = document.createElement("div");
    cover.className = "studyshare-ended";
    var notice = document.createElement("p");
    notice.setAttribute("role", "alert");
    var detail = problem && problem.detail ? " (" + problem.detail + ")" : "";
    notice.textContent = meta("studyshare-ended") + detail + " ";
    var back = document.createElement("a");
    back.href = studyPage;
    back.textContent = meta("studyshare-back");
    notice.appendChild(back);
    cover.appendChild(notice);
    document.body.appendChild(cover);
  }

  window.config = async function (ohif) {
    var issued;
    try {
      issued = await ask();
    } catch (problem) {
      window.location.replace(studyPage);
      return new Promise(function () {});
    }
    keep(issued);
    var dicomweb = issued.dicomweb;
    return {
      routerBasename: "/viewer",
      showStudyList: false,
      // the patient as this share shows them (the pseudonym on an anonymized share)
      showPatientInfo: "visible",
      extensions: [],
      modes: [],
      customizationService: {},
      maxNumberOfWebWorkers: 3,
      showLoadingIndicator: true,
      showWarningMessageForCrossOrigin: false,
      showCPUFallbackMessage: true,
      strictZSpacingForVolumeViewport: true,
      defaultDataSourceName: "studyshare",
      dataSources: [
        {
          namespace: "@ohif/extension-default.dataSourcesModule.dicomweb",
          sourceName: "studyshare",
          configuration: {
            friendlyName: "StudyShare",
            name: "studyshare",
            wadoUriRoot: dicomweb,
            qidoRoot: dicomweb,
            wadoRoot: dicomweb,
            qidoSupportsIncludeField: false,
            imageRendering: "wadors",
            thumbnailRendering: "thumbnail",
            thumbnailRequestStrategy: "fetch",
            enableStudyLazyLoad: true,
            supportsFuzzyMatching: false,
            supportsWildcard: false,
            staticWado: false,
            singlepart: "",
            bulkDataURI: { enabled: true, relativeResolution: "studies" },
            omitQuotationForMultipartRequest: true,
            // Called when the data source starts, its services registered: every request of
            // OHIF (DICOMweb client, image loader, thumbnails) asks this service its header.
            onConfiguration: function (configuration) {
              var services = ohif.servicesManager.services;
              services.userAuthenticationService.setServiceImplementation({
                getAuthorizationHeader: function () {
                  return authorization ? { Authorization: authorization } : {};
                },
              });
              return configuration;
            },
          },
        },
      ],
      httpErrorHandler: function (error) {
        var status = error && error.status;
        if (status === 401 || status === 403 || status === 404 || status === 423) {
          ended(null);
        }
      },
    };
  };
})();
